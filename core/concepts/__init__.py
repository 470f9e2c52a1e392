"""Concepts of every kind and their per-span scores: registry, lexical, n-grams, vectors, evidence."""
