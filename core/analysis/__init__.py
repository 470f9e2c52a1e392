"""Statistics of concept leans (DESIGN §4): global, conditional, prompt views, predictive power."""
