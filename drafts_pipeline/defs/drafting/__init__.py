"""Drafting: task partitions, prompts, provider drafts, the sensor and the retry schedule."""
