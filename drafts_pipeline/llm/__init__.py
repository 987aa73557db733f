"""LLM providers: one contract (`generate`), thin resources per wire API, one retry loop."""
