"""`python -m callplane` runs the CLI."""

from callplane.cli import main

main()
