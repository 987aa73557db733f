"""Where documentation tasks come from: discovered in a source tree, or imported from a file."""
