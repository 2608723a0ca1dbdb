"""Loading a checkpoint whole: transformers fills a tensor the checkpoint lacks with random values, and a config
that does not fit the weights fails deep inside it; either is refused here in one line, naming the checkpoint."""

from __future__ import annotations

import re

from harness.errors import BadInputError, first_of

# a tensor inside a decoder layer (``model.layers.3.``, ``gpt_neox.layers.3.``); transformers already leaves out the
# stray keys it knows to be harmless (an old checkpoint's rotary ``inv_freq`` buffers)
IN_A_LAYER = re.compile(r"(^|\.)layers\.\d+\.")


class IncompleteCheckpointError(BadInputError):
    """A checkpoint whose weights do not fill the architecture its config describes (missing or misshapen
    tensors)."""


def load_complete(model_class, location, name: str, **kwargs):
    """``model_class.from_pretrained(location)``, refusing a checkpoint whose weights and config.json do not match:
    transformers fills a missing tensor with random values and leaves out a decoder layer's tensor the config has
    no place for, and only logs either, so a partly saved or hand-edited checkpoint would be analysed as another
    model."""
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
        shown = first_of(missing)
        raise IncompleteCheckpointError(
            f"{name} lacks {len(missing)} of the weights its config.json's architecture needs ({shown}): "
            "transformers would fill them with random values; save or download the whole checkpoint again"
        )
    stray = sorted(key for key in info.get("unexpected_keys") or () if IN_A_LAYER.search(key))
    if stray:
        shown = first_of(stray)
        raise IncompleteCheckpointError(
            f"{name} holds {len(stray)} tensors in its decoder layers that its config.json's architecture has no "
            f"place for ({shown}): transformers would leave them out and run another model; is config.json the "
            "one these weights were saved with (its layer count, its modules)?"
        )
    return model
