"""Pure rules that decide correctness: no I/O, no web framework, no database."""
