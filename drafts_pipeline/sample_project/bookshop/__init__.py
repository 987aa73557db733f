"""A tiny bookshop: the code the demo documents."""
