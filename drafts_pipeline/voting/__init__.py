"""Votes on blind drafts and what follows: the voting page, the leaderboard, the patch that
applies the winners. Plain code that knows nothing of Dagster."""
