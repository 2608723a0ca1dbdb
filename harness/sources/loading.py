"""Loading a checkpoint whole: transformers fills a tensor the checkpoint lacks with random values, and a config
that does not fit the weights fails deep inside it; either is refused here in one line, naming the checkpoint."""

from __future__ import annotations

from harness.errors import BadInputError


class IncompleteCheckpointError(BadInputError):
    """A checkpoint whose weights do not fill the architecture its config describes (missing or misshapen
    tensors)."""


def load_complete(model_class, location, name: str, **kwargs):
    """``model_class.from_pretrained(location)``, refusing a checkpoint whose weights do not fill the architecture
    its config.json describes: transformers fills a missing tensor with random values and only logs it, so a
    partly saved or hand-edited checkpoint would be analysed as a different model."""
    try:
        model, info = model_class.from_pretrained(location, output_loading_info=True, **kwargs)
    except RuntimeError as error:
        if "ignore_mismatched_sizes" not in str(error) and "size mismatch" not in str(error):
            raise
        raise IncompleteCheckpointError(
            f"{name}'s weights do not have the shapes its config.json gives them (transformers' load report above "
            "lists them): is config.json the one these weights were saved with?"
        ) from None
    missing = sorted(info.get("missing_keys") or ())
    if missing:
        shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
        raise IncompleteCheckpointError(
            f"{name} lacks {len(missing)} of the weights its config.json's architecture needs ({shown}): "
            "transformers would fill them with random values; save or download the whole checkpoint again"
        )
    return model
