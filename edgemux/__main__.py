"""``python -m edgemux`` runs the CLI."""

from .cli import main

main()
