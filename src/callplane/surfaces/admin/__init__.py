"""The operator's admin API: accounts, tokens, media nodes, contact center and call tracking setup."""
