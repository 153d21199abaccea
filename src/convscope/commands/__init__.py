"""Sub-commands of the `convscope` command line, one module each (see cli.py)."""
