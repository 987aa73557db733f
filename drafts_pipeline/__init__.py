"""drafts_pipeline: blind, comparable documentation drafts from several LLM providers."""
