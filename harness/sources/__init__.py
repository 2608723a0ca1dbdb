"""Where a pair comes from: the registry and loading, the tiny-pair builder with its tokenizer and corpus,
the generated task data and the probe sets."""
