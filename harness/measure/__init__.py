"""What is measured on a loaded pair: hidden states captured in one forward pass per sample, the layer-wise
profile, the logit lens, layer swaps and lm-eval scores."""
