"""`GET /v1/models` and `GET /v1/models/{model}` for a bearer caller, served from ASGI
(`inference.chat.asgi`): the cheap requests clients make most, answered on the event loop from
this process's cache of what each user may use (dropped everywhere on any change to models,
grants, roles or teams), or on a miss in one database call off the loop; not with a thread hop
per Django middleware.

The DRF views (`inference.api.views`) answer the same from a console session, with the same
entries (`model_entry`) and the same refusals.
"""

import orjson

from accounts.principal import Principal
from gatehouse.database_calls import cached_or_reloaded
from inference.chat.http import Responder, error_respond, scope_refused
from inference.models import Model
from inference.selectors import model_list_usable_cached

MODELS_SCOPE = "models:read"


def model_entry(model: Model) -> dict[str, object]:
    """One model in OpenAI's shape."""
    return {
        "id": model.name,
        "object": "model",
        "created": int(model.created_at.timestamp()),
        "owned_by": "gatehouse",
    }


def model_not_found_message(name: str) -> str:
    """The same whether the model does not exist or is not the caller's: nothing to probe."""
    return f"The model '{name}' does not exist or you do not have access to it."


async def models_list_serve(*, principal: Principal, responder: Responder) -> None:
    """The models the caller may use, in OpenAI's list format."""
    if await scope_refused(principal=principal, scope=MODELS_SCOPE, responder=responder):
        return
    usable = await _usable(principal)
    await _json_respond(responder, {"object": "list", "data": [model_entry(model) for model in usable]})


async def model_detail_serve(*, principal: Principal, responder: Responder, model_name: str) -> None:
    """One model, if the caller may use it; otherwise 404, as if it did not exist."""
    if await scope_refused(principal=principal, scope=MODELS_SCOPE, responder=responder):
        return
    model = next((model for model in await _usable(principal) if model.name == model_name), None)
    if model is None:
        await error_respond(
            responder, status=404, message=model_not_found_message(model_name), code="not_found"
        )
        return
    await _json_respond(responder, model_entry(model))


async def _usable(principal: Principal) -> list[Model]:
    return await cached_or_reloaded(model_list_usable_cached, user=principal.user, api_key=principal.api_key)


async def _json_respond(responder: Responder, document: object) -> None:
    await responder.start(200, [("Content-Type", "application/json")])
    await responder.end(orjson.dumps(document))
