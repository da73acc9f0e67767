"""`python3 -m imagefactory` runs the CLI."""

from .cli import main

main()
