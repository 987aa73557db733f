"""Voting: ballots with blind labels and the voting-ready set."""
