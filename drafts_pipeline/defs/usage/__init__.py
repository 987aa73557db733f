"""Usage: what the providers were asked and what it cost, and how each provider did."""
