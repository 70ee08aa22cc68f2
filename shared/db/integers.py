"""Whole numbers from callers, checked in one place against what the database's columns hold.

Every integer a request carries (a path id, a query parameter, a form or JSON field) passes through
here before it reaches a query: sqlite3 cannot bind one past 64 bits (OverflowError), PostgreSQL
refuses one past its column's type, and neither is a fault of the service to answer with a 500.
"""

from __future__ import annotations

import re

from shared.errors import BadRequest, NotFound

INT32_MAX = 2**31 - 1  # an INTEGER column: job, manifest and service-error ids, versions, ordinals
INT64_MAX = 2**63 - 1  # a BIGINT column, and the widest integer SQLite binds
# ASCII digits only: int(), str.isdigit() and the regex \d also take other scripts' digits ("١" is 1)
DIGITS = "[0-9]+"
_WHOLE = re.compile(r"([+-]?)0*([0-9]+)")
_BEYOND = 10**30  # stands for any longer number: past every range, and no huge int() to compute


def parse(text: str | None) -> int | None:
    """The whole number ``text`` spells in ASCII digits (with an optional sign), else None."""
    match = _WHOLE.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        return None
    sign, digits = match.groups()
    number = int(digits) if len(digits) <= 30 else _BEYOND
    return -number if sign == "-" else number


def fits(value: object, minimum: int = 0, maximum: int = INT32_MAX) -> bool:
    """Whether ``value`` is an int (not a bool) in ``minimum..maximum``."""
    return isinstance(value, int) and not isinstance(value, bool) and minimum <= value <= maximum


def path_id(text: str | None, *, minimum: int = 0, maximum: int = INT32_MAX) -> int | None:
    """A path id in ASCII digits within range, else None (no such path, as the route table says)."""
    number = parse(text) if text and text.isascii() and text.isdigit() else None
    return number if fits(number, minimum, maximum) else None


def id_of(what: str, text: str, *, minimum: int = 0, maximum: int = INT32_MAX) -> int:
    """A record's id from the path: 400 when it is not a whole number, 404 when no id can be that large."""
    if not (text.isascii() and text.isdigit()):
        raise BadRequest(f"A {what} id is a whole number, not {text[:40]!r}")
    number = path_id(text, minimum=minimum, maximum=maximum)
    if number is None:
        raise NotFound(f"There is no {what} {text[:40]}")
    return number


def parameter(name: str, value: object, *, minimum: int = 0, maximum: int = INT32_MAX) -> int:
    """A query, form or JSON integer: the text of one, or an int; BadRequest naming ``name`` otherwise."""
    number = value if isinstance(value, int) and not isinstance(value, bool) else None
    if isinstance(value, str):
        number = parse(value.strip())
    if number is None:
        shown = value[:40] if isinstance(value, str) else value
        raise BadRequest(f"The '{name}' parameter must be a whole number, not {shown!r}")
    if number < minimum:
        raise BadRequest(f"The '{name}' parameter must be at least {minimum}")
    if number > maximum:
        raise BadRequest(f"The '{name}' parameter must be at most {maximum}")
    return number
