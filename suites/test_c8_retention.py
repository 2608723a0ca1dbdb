"""C8 (App. B, Table 4): after tuning, the best middle-segment LoRA arm keeps perplexity on held-out
general text closer to the base model's than full-depth LoRA and the edge masks do."""


def test_mid_block_lora_forgets_the_least(tuned_pair, check_claim):
    check_claim("C8", tuned_pair)


def test_planted_controls_get_the_known_c8_verdict(planted_tuned_pair, check_claim):
    check_claim("C8", planted_tuned_pair)
