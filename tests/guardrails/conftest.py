"""A fake OpenAI-compatible upstream for each guardrail test (tests.inference's fixture)."""

from tests.inference.conftest import upstream

__all__ = ["upstream"]
