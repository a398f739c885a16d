"""Run an admitted chat, as every door does: from the model's response cache where it keeps
answers (`cached`), else generated (`generate`), and where its model cannot answer before its
first token, by its fallback models (`fallback`). Texts go to `on_texts` as they come, the end
is returned.

Failure mode: a chat that cannot be served, or fails, raises `ChatRefused` after its outcome
is recorded and what it held is given back. A chat whose caller leaves (the task is
cancelled) is recorded as cancelled and charged what it was sent.
"""

from inference.chat.admission import ChatAdmitted
from inference.chat.answer import ChatDoor, ChatEnd, OnStarted, OnTexts, OnToolCalls
from inference.chat.arrivals import chat_arrival_end
from inference.chat.cached import chat_cached_or_generated
from inference.chat.fallback import chat_fallback_run, chat_refusal_falls_back
from inference.chat.guarding import guard_redactions_record, output_guard_for
from inference.chat.refusal import ChatRefused


async def chat_run(
    admitted: ChatAdmitted,
    *,
    stream: bool,
    on_started: OnStarted,
    on_texts: OnTexts,
    on_tool_calls: OnToolCalls | None = None,
) -> ChatEnd:
    """Generate the answer, handing its texts to `on_texts` and, where the chat offered tools,
    the calls it makes to `on_tool_calls` (OpenAI's pieces: index, then id and name, then
    arguments); `stream` False asks for it whole.

    `on_started` is awaited once the chat is under way (a remote model's first token, a local
    model's dispatch), with who answers: a refusal raised before it is the whole answer.
    Where the model keeps answers, a deterministic request asked again is answered from them
    (`response_cache`); where it cannot answer before anything was sent, its fallback models
    are asked (`fallback`).
    """
    doors: list[ChatDoor] = []

    async def serve(chat: ChatAdmitted) -> ChatEnd:
        # Served now: whichever way it is answered, it no longer counts as arriving.
        chat_arrival_end(chat.arrival)
        # Each chat's answer through its own model's guard (a fallback's may differ).
        guarded = output_guard_for(chat.guard, on_texts)
        door = ChatDoor(
            stream=stream,
            on_started=on_started,
            on_texts=guarded.texts if guarded is not None else on_texts,
            on_tool_calls=on_tool_calls,
        )
        doors.append(door)
        end = await chat_cached_or_generated(chat, stream=stream, door=door)
        if guarded is not None:
            await guarded.finish()
            await guard_redactions_record(
                user=chat.user,
                api_key=chat.api_key,
                guard=guarded.guard,
                direction="answer",
                redacted=guarded.redacted,
                model=chat.plan.model_name,
                generation_id=chat.generation_id,
            )
        return end

    def begun() -> bool:
        return any(door.begun for door in doors)

    try:
        return await serve(admitted)
    except ChatRefused as refused:
        if begun() or not chat_refusal_falls_back(refused, admitted=admitted):
            raise
        return await chat_fallback_run(admitted, refused, run=serve, answer_begun=begun)
