"""Source code of the languages beside Python, read as tree-sitter syntax trees: the facts of a
symbol (`languages.tree_symbol_facts`) and the undocumented definitions of a file
(`languages.undocumented_definitions`). Python is read with `ast` in `prompts.code_facts` and
`tasks.discover`."""
