"""`python -m train`: train two-tower models on MS MARCO (config, loop, checkpoints, W&B, sweeps)."""
