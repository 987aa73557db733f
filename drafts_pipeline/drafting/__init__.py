"""Pure decisions of the drafting flow: validation, blindness, ballots, quorum."""
