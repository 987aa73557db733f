"""Versioned prompt templates and the code facts they are built from."""
