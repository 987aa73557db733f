"""Voting: ballots with blind labels, the voting-ready set, and what the votes say."""
