"""Software-defined assets: pending tasks, per-provider drafts, ballots, the voting-ready set."""
