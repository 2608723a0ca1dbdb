"""From measurements to verdicts: the claim predicates, their resampled intervals, the directional
hypotheses, dose-response and regression against stored baselines."""
