"""Votes, the leaderboard and what voters see: plain code that knows nothing of Dagster."""
