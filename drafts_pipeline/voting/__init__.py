"""Votes on blind drafts and what follows from them, up to the patch that applies the winners."""
