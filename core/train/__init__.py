"""Shaped-reward DPO training, its run folder and the eval of what changed (DESIGN §5)."""
