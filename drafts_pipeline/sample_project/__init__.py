"""A small sample code base, shipped for `drafts-pipeline demo`: its functions lack docstrings."""
