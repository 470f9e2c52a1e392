"""sculpt: audit a preference dataset at the level of concepts before post-training."""
