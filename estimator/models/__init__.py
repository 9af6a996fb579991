"""Models: HF config parsing, model deployments rolled up from one attention op per layer, curves."""
