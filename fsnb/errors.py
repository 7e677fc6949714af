"""Exceptions raised by fsnb; each message is one line naming the problem and the fix."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Hint:
    """The fix of an error when it is to pass an argument: ``{before}pass ARGUMENT=VALUE{after}``.

    Kept apart from the message so that each surface names the argument in its own
    language: the library writes ``pass timestamp_field=<your time column>``, a magic
    writes its flag (``use --timestamp COL``), see ``FsnbError.message_for``."""

    argument: str  # the library argument at fault, e.g. "timestamp_field"
    value: str  # as written in Python: "True", "<your time column>"
    before: str = ""  # e.g. "rename the column or "
    after: str = ""  # e.g. " to name columns view__feature"

    def text(self, spell: Callable[[str, str], str | None] | None = None) -> str:
        """The fix; spell(argument, value) names the argument another way (None: as the API)."""
        shown = spell(self.argument, self.value) if spell is not None else None
        return f"{self.before}{shown or f'pass {self.argument}={self.value}'}{self.after}"


class FsnbError(ValueError):
    """Base class of every error fsnb raises on purpose.

    The message is kept on one line: a name or value quoted from user data may hold
    line breaks, and a notebook shows an error's first line as the whole story.
    ``hint``: the fix, when it is an argument to pass (appended as ``; <fix>``).
    ``detail``: an engine's own multi-line message (DuckDB's caret under the mistake),
    for a surface that can show it whole; never part of str(error).
    """

    hint: Hint | None = None
    detail: str | None = None

    def __init__(self, *args: object, hint: Hint | None = None, detail: str | None = None) -> None:
        if args and isinstance(args[0], str) and len(args[0].splitlines()) > 1:
            args = (" ".join(part.strip() for part in args[0].splitlines() if part.strip()), *args[1:])
        self.problem = str(args[0]) if args else ""
        self.hint, self.detail = hint, detail
        if hint is not None and args:
            args = (f"{self.problem}; {hint.text()}", *args[1:])
        super().__init__(*args)

    def message_for(self, spell: Callable[[str, str], str | None]) -> str:
        """The message with its hint's argument named by spell (a magic's flag)."""
        if self.hint is None:
            return str(self)
        return f"{self.problem}; {self.hint.text(spell)}"


class UnknownFeatureView(FsnbError, KeyError):
    """A feature view name that the store does not know."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class UnknownFeature(FsnbError, KeyError):
    """A feature name that the view does not have."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class SchemaMismatch(FsnbError):
    """Data whose columns or types do not match the feature view."""


class InvalidData(FsnbError):
    """Data that cannot be stored: empty, nulls in keys or timestamps, wrong types."""


class InvalidDefinition(FsnbError):
    """A feature view definition that is inconsistent or malformed."""


class QueryError(FsnbError):
    """A DuckDB SQL error in user-supplied SQL (DuckDB's message is passed through)."""


class StoreBusy(FsnbError):
    """Another process held the store's offline database for longer than the wait allowed."""


class StoreError(FsnbError):
    """The store's files are unusable or a backend could not be reached."""


class FingerprintMismatch(FsnbError):
    """A rebuilt training set differs from the one recorded at export."""


def one_line(exc: BaseException) -> str:
    """An exception's message on one line (its first three lines joined), for user errors."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return " ".join(lines[:3]) if lines else type(exc).__name__


def closest(name: str, candidates: Iterable[str]) -> str:
    """Return a "; did you mean 'x'?" hint, or "" when nothing is close."""
    options = sorted(set(candidates))
    match = difflib.get_close_matches(name, options, n=1, cutoff=0.6)
    if not match:
        # "logins" -> "login_count": a shared prefix reads as a typo too.
        stem = name.lower().rstrip("s")
        match = [o for o in options if len(stem) >= 3 and (o.lower().startswith(stem) or stem in o.lower())][:1]
    if match:
        return f"; did you mean '{match[0]}'?"
    if options:
        shown = ", ".join(options[:8]) + (", ..." if len(options) > 8 else "")
        return f"; known: {shown}"
    return ""
