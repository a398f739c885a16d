"""Sampling settings that differ per row of a batch (transformers' are one per call)."""

from typing import Any


class PerRowSampling:
    """A logits processor applying each row's temperature and top-p; temperature 0 is greedy.

    Used with `do_sample=True` and transformers' own temperature, top-k and top-p turned
    off, so a batch can mix greedy and sampled requests with different settings.
    """

    def __init__(self, *, temperatures: list[float], top_ps: list[float], device: Any) -> None:
        import torch

        self._temperatures = torch.tensor(temperatures, dtype=torch.float32, device=device)
        self._top_ps = torch.tensor(top_ps, dtype=torch.float32, device=device)
        self._greedy = self._temperatures <= 0

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        temperatures = torch.where(self._greedy, torch.ones_like(self._temperatures), self._temperatures)
        scores = scores / temperatures[:, None]
        # Top-p: drop the least likely tokens whose total probability stays under 1 - top_p,
        # always keeping the most likely one.
        sorted_scores, sorted_ids = torch.sort(scores, descending=False, dim=-1)
        cumulative = sorted_scores.softmax(dim=-1).cumsum(dim=-1)
        drop_sorted = cumulative <= (1 - self._top_ps)[:, None]
        drop_sorted[:, -1] = False
        drop = drop_sorted.scatter(1, sorted_ids, drop_sorted)
        scores = scores.masked_fill(drop, float("-inf"))
        # Greedy rows keep only their best token, so sampling them picks it.
        not_best = torch.ones_like(scores, dtype=torch.bool)
        not_best.scatter_(1, scores.argmax(dim=-1, keepdim=True), False)
        return scores.masked_fill(self._greedy[:, None] & not_best, float("-inf"))


def seeded_rows_sample(probabilities: Any, generators: list[Any]) -> dict[int, int]:
    """Each seeded row's token, drawn from its own generator (rows without one: not drawn)."""
    import torch

    return {
        row: int(torch.multinomial(probabilities[row], num_samples=1, generator=generator))
        for row, generator in enumerate(generators)
        if generator is not None
    }


class SeededRows:
    """A logits processor for static batches, after PerRowSampling: each seeded row's token is
    drawn here from its own generator, and its scores leave only that token for `generate()`."""

    def __init__(self, *, generators: list[Any]) -> None:
        self._generators = generators

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        drawn = seeded_rows_sample(scores.softmax(dim=-1), self._generators)
        for row, token in drawn.items():
            scores[row] = float("-inf")
            scores[row, token] = 0.0
        return scores
