"""What running a model-written program reports (the sandbox makes these; samples and runs files keep them)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["ProgramRun", "ProgramStatus"]

ProgramStatus = Literal["ok", "error", "timeout", "output-limit", "killed"]


@dataclass(frozen=True)
class ProgramRun:
    """How a program ended and what it printed. ``status`` comes from the kernel and our watchdog."""

    status: ProgramStatus
    stdout: str
    detail: str  # the exception's last line, the signal, or which limit ended it
    seconds: float

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_json(self) -> dict[str, object]:
        return {"status": self.status, "stdout": self.stdout, "detail": self.detail, "seconds": round(self.seconds, 3)}

    @classmethod
    def from_json(cls, row: dict[str, object]) -> ProgramRun:
        return cls(str(row["status"]), str(row.get("stdout", "")), str(row.get("detail", "")),  # type: ignore[arg-type]
                   float(row.get("seconds", 0.0)))  # type: ignore[arg-type]  # fmt: skip
