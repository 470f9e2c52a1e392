"""Sparse autoencoders: training, the registry, encoding spans, feature cards and labels."""
