"""Residual-stream activations: models, chat-template tokens, the truncated forward, shards, Ray."""
