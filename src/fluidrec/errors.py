"""Errors a user can act on. The CLI prints them as one line and exits with code 2."""

from __future__ import annotations

from typing import Any


class FluidrecError(Exception):
    """Base class: anything a user caused and can fix (bad input, bad usage)."""


class UsageError(FluidrecError):
    """Bad command-line usage or configuration value."""


class DataError(FluidrecError):
    """A table, file or value is malformed.

    Args:
        reason: what is wrong, in words.
        table: table or file name where it was found.
        column: column (field) name, if one.
        row: 0-based row index (or 1-based line for text files, say so in reason).
        value: the offending value.
    """

    def __init__(
        self,
        reason: str,
        *,
        table: str | None = None,
        column: str | None = None,
        row: int | None = None,
        value: Any = None,
    ) -> None:
        self.reason = reason
        self.table = table
        self.column = column
        self.row = row
        self.value = value
        super().__init__(self._message())

    def _message(self) -> str:
        where = []
        if self.table is not None:
            where.append(f"table {self.table!s}")
        if self.column is not None:
            where.append(f"column {self.column!s}")
        if self.row is not None:
            where.append(f"row {self.row}")
        if self.value is not None:
            shown = repr(self.value)
            where.append(f"value {shown[:80]}")
        prefix = ", ".join(where)
        return f"{prefix}: {self.reason}" if prefix else self.reason


class ConfigError(UsageError):
    """A config dataclass got an invalid value (raised from __post_init__)."""


def first_line(exc: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message, cut to ``limit`` characters (for one-line errors)."""
    return ((str(exc).strip().splitlines() or [""])[0])[:limit]


def check(condition: bool, message: str) -> None:
    """Raise ConfigError(message) unless condition holds (used in __post_init__)."""
    if not condition:
        raise ConfigError(message)
