"""Pure decisions of the drafting flow: validation, ballots, quorum."""
