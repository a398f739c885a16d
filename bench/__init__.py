"""`make bench`: the performance goals of SPEC §8, measured side by side and reported as ratios."""
