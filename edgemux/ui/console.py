"""The two consoles: stderr for progress, live views and logs; stdout for what a command was asked for."""

from __future__ import annotations

from rich.console import Console

stderr = Console(stderr=True, highlight=False)
stdout = Console(highlight=False, soft_wrap=True)


def wide_stdout() -> Console:
    """stdout for wide tables: the terminal's width, or 160 columns when piped (files have no width)."""
    return stdout if stdout.is_terminal else Console(highlight=False, width=160)
