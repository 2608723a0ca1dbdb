"""C8 (App. B, Table 4): after tuning, the best middle-segment LoRA arm keeps perplexity on held-out
general text closer to the base model's than full-depth LoRA and the edge masks do."""


def test_mid_block_lora_forgets_the_least(tuned_pair, check_claim):
    check_claim("C8", tuned_pair)
