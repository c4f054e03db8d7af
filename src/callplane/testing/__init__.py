"""callplane."""
