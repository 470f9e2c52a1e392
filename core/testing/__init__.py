"""Fixtures for tests and benchmarks (sample lakes, concept planting); the product never imports it."""
