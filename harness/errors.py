"""The one family of errors a user's input can cause.

Anything raised as a ``BadInputError`` is an expected refusal (a checkpoint of
another layout, non-finite weights or outputs, a corrupt file, a pair too small
for a claim): the command line prints its message as one line and exits 2, and
pytest fails each test of the pair with that line, without a traceback.
"""


class BadInputError(ValueError):
    """An input the harness refuses; the message names it and says why."""


class NonFiniteError(BadInputError, FloatingPointError):
    """A model produced NaN or infinite activations, logits or log-likelihoods."""


def first_of(names, shown: int = 3) -> str:
    """The first ``shown`` of ``names`` for a message, and how many more there are."""
    names = list(names)
    return ", ".join(names[:shown]) + (f" and {len(names) - shown} more" if len(names) > shown else "")
