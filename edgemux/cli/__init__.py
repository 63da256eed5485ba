"""The ``edgemux`` command: thin shells over the library. stdout carries the answer (or JSON with --json);
progress, the live view and logs go to stderr. Errors are mapped to exit codes in one place (``common``).

The commands live one module per job (``answer``, ``measure``, ``models``, ``profiles``, ``server``), each
importing only ``common``; the group imports a command's module when the command is first used
(``common.COMMAND_MODULES``)."""

from __future__ import annotations

from .common import ABSTAIN_EXIT, EXIT_CODES, NO_ANSWER_EXIT, cli

__all__ = ["ABSTAIN_EXIT", "EXIT_CODES", "NO_ANSWER_EXIT", "cli", "main"]


def main() -> None:
    """Console entry point."""
    cli()
