"""LLM provider resources: one contract (`generate`), one retry layer, offline mode."""
