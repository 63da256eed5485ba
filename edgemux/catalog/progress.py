"""What fetching reports while it runs (fetch and wheelfetch both report it); the UI draws it."""

from __future__ import annotations

from typing import Protocol

__all__ = ["NullProgress", "Progress"]


class Progress(Protocol):
    """What fetching reports; the UI draws it as a progress bar (bytes, speed, ETA)."""

    def start(self, description: str, total_bytes: int | None) -> None: ...
    def advance(self, nbytes: int) -> None: ...
    def finish(self) -> None: ...


class NullProgress:
    def start(self, description: str, total_bytes: int | None) -> None:
        pass

    def advance(self, nbytes: int) -> None:
        pass

    def finish(self) -> None:
        pass
