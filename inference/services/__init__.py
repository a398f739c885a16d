"""Writes for models and inference. Import from here; the modules group them by concern."""

from inference.services.access import model_access_grant, model_access_revoke
from inference.services.chat import (
    chat_abandon,
    chat_prepare,
    chat_record_outcome,
    chat_refusal_record,
    chat_token_estimate,
)
from inference.services.chat_plan import ChatPlan, ChatRejected
from inference.services.conversations import (
    conversation_delete,
    conversation_exchange_record,
    conversation_model_check,
)
from inference.services.demo import demo_embed_model_ensure, demo_model_ensure
from inference.services.lifecycle import (
    model_canary_stop,
    model_version_canary_start,
    model_version_promote,
    model_version_retire,
    model_version_rollback,
    model_version_stage,
)
from inference.services.pricing import model_version_prices_update
from inference.services.registry import (
    model_deployment_add,
    model_register,
    model_source_relative,
    model_version_register,
    model_version_register_from_hub,
    model_version_register_remote,
    model_version_update,
    model_version_upstream_errors,
)
from inference.services.serving import MODEL_SERVING_FIELDS, model_serving_update

__all__ = [
    "MODEL_SERVING_FIELDS",
    "ChatPlan",
    "ChatRejected",
    "chat_abandon",
    "chat_prepare",
    "chat_record_outcome",
    "chat_refusal_record",
    "chat_token_estimate",
    "conversation_delete",
    "conversation_exchange_record",
    "conversation_model_check",
    "demo_embed_model_ensure",
    "demo_model_ensure",
    "model_access_grant",
    "model_access_revoke",
    "model_canary_stop",
    "model_deployment_add",
    "model_register",
    "model_serving_update",
    "model_source_relative",
    "model_version_canary_start",
    "model_version_prices_update",
    "model_version_promote",
    "model_version_register",
    "model_version_register_from_hub",
    "model_version_register_remote",
    "model_version_retire",
    "model_version_rollback",
    "model_version_stage",
    "model_version_update",
    "model_version_upstream_errors",
]
