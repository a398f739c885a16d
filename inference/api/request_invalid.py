"""The one error a `/v1` request body gets: what is wrong, in OpenAI's words, and where."""


class CompletionRequestInvalid(Exception):
    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
