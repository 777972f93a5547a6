"""How config problems are reported: each as ``path.to.field: message``, all of a file's at once."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import ValidationError


@dataclass(frozen=True)
class Problem:
    path: str
    message: str


class ConfigError(Exception):
    """Every problem found in one config file, each as ``FILE: path.to.field: message``."""

    def __init__(self, source: str, problems: list[Problem]):
        self.source = source
        self.problems = problems
        super().__init__("\n".join(self.lines()))

    def lines(self) -> list[str]:
        return [f"{self.source}: {p.path}: {p.message}" for p in self.problems]


def _loc(loc: tuple) -> str:
    return ".".join(str(part) for part in loc) or "(top level)"


def pydantic_problems(err: ValidationError) -> list[Problem]:
    """pydantic's errors in the file's terms: where (``section.0.field``) and what, without pydantic's jargon."""
    out = []
    for e in err.errors():
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown key (check the spelling against the README's config reference)"
        elif msg.startswith("Value error, "):
            msg = msg[len("Value error, "):]
        out.append(Problem(_loc(e["loc"]), msg))
    return out
