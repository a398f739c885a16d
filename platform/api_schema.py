"""The OpenAPI schema says how each operation fails, not only how it succeeds.

drf-spectacular documents the success response a view declares. Every operation can also
refuse: a bad request (400), no or a wrong credential (401), a role or scope that does not
allow it (403), an object that is not there or not the caller's (404), a limit (429), or a
store that cannot be reached (503). Fuzzing the API against its schema (tests/reliability)
found those answers undocumented; this hook documents them, in the two shapes the API
uses: DRF's under /api/ and OpenAI's under /v1/ (gatehouse.api_errors).
"""

from typing import Any

_API_ERROR = {
    "type": "object",
    "description": "`detail` says what went wrong; a refused field is named with its messages.",
    "properties": {"detail": {"type": "string"}},
    "additionalProperties": True,
}
_OPENAI_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type"],
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "code": {"type": "string", "nullable": True},
            },
        }
    },
}
_DESCRIPTIONS = {
    "400": "The request is malformed or breaks a rule; the body says which.",
    "401": "No credential, or one that is wrong, expired or revoked.",
    "403": "The credential is valid but its role, scope or network does not allow this.",
    "404": "No such object, or not one the caller may see.",
    "415": "The body is not JSON.",
    "409": "A request of this kind is already open for this person.",
    "429": "A rate limit or quota is reached; Retry-After says when to try again.",
    "502": "The model's remote server answered, but not with what this endpoint returns.",
    "503": "A store the request needs (database, Redis, the model) cannot be reached; nothing was saved.",
}
_METHODS = ("get", "post", "put", "patch", "delete")
# Refusals particular to a few operations, by (path, method).
_PARTICULAR = {
    # A body on DELETE (the code that proves it is you) is not shown as a request body, so its
    # refusal is listed here.
    ("/api/auth/2fa/totp/", "delete"): ["400"],
    ("/api/compliance/exports/", "post"): ["409"],
    ("/api/compliance/erasures/", "post"): ["409"],
    # The body names a model that may not exist, or not for the caller (404); a remote model's
    # answer may not be what the endpoint promises (502).
    **{
        (path, "post"): ["404", "502"]
        for path in ("/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/responses")
    },
}


def _codes(path: str, method: str, operation: dict[str, Any]) -> list[str]:
    codes = ["401", "403", "503", *_PARTICULAR.get((path, method), [])]
    if operation.get("requestBody") or operation.get("parameters"):
        codes.append("400")
    if operation.get("requestBody"):
        codes.append("415")
    if "{" in path:
        codes.append("404")
    if path.startswith(("/v1/", "/api/auth/")):
        codes.append("429")
    return codes


def error_responses_document(
    result: dict[str, Any], generator: Any, request: Any, public: bool
) -> dict[str, Any]:
    """drf-spectacular postprocessing hook: add the error answers each operation can give."""
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    schemas.setdefault("ApiError", _API_ERROR)
    schemas.setdefault("OpenAIError", _OPENAI_ERROR)
    for path, item in result.get("paths", {}).items():
        shape = "OpenAIError" if path.startswith("/v1/") else "ApiError"
        for method in _METHODS:
            operation = item.get(method)
            if operation is None:
                continue
            responses = operation.setdefault("responses", {})
            for code in _codes(path, method, operation):
                responses.setdefault(
                    code,
                    {
                        "description": _DESCRIPTIONS[code],
                        "content": {
                            "application/json": {"schema": {"$ref": f"#/components/schemas/{shape}"}}
                        },
                    },
                )
    return result
