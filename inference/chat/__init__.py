"""The chat pipeline: the one way a chat runs, whichever door it came through.

    admission (admission.py)  who may run what, the chat slot and every quota, in one step
    run       (run.py)        from the response cache (cached.py, response_cache.py), else
                              generated (generate.py): here on the event loop for a remote
                              model, on a worker (or this process's pool) for a local one;
                              the fallback models where the model cannot answer (fallback.py)
    outcome   (outcome.py)    the one place a chat's end is recorded and what it held given back
    refusal   (refusal.py)    the one refusal type, with a code, a status and a message

The doors (`/v1/chat/completions` in `inference.chat.http`, the websocket consumer) parse,
call the pipeline and format; nothing else.
"""
