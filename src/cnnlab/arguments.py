"""What a public function's arguments accept, checked before the function runs: one helper for the whole API.

Why: a notebook user who passes a path where a loaded run is expected, or a string where a list is expected, should
read one line naming the argument and what it accepts, not an AttributeError from three frames down (or, worse, a
10^12-element allocation). Each argument gets an `Accepts` (a description plus a check that may also convert an
obvious other form, e.g. a run folder into a loaded run); `checked(**accepts)` wraps a function (or a class's
`__init__`) so that every argument is checked by name, and appends the descriptions to its docstring, so the
message, the check and the documentation are one fact in one place. Every refusal is a `CnnlabError` (errors.py: the
user can fix it), whatever its kind (wrong type, out of range, missing): one exception type for the API as for the
CLI.

This module is at the bottom of the layers (like errors.py): data, models and training may use it for their own
classes; what an argument of a *training* type accepts (a RunConfig, a loaded run) is declared by cnnlab.api.
"""

from __future__ import annotations

import functools
import inspect
import math
import numbers
import os
import reprlib
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

from cnnlab.errors import CnnlabError

_REPR = reprlib.Repr()
_REPR.maxstring, _REPR.maxother, _REPR.maxlist, _REPR.maxdict = 40, 40, 4, 4


class Refused(Exception):
    """Raised by a check: `problem` says what is wrong (the message adds the argument and what it accepts)."""

    def __init__(self, problem: str = ""):
        super().__init__(problem)
        self.problem = problem


def shown(value: Any) -> str:
    """A short, safe picture of a value for a message: its repr cut to 40 characters, and its type."""
    try:
        text = _REPR.repr(value)
    except Exception:  # noqa: BLE001 - a hostile __repr__ must not hide the real message
        text = "<unprintable>"
    return f"{text} ({type(value).__name__})"


@dataclass(frozen=True)
class Accepts:
    """One argument's contract: `text` (what it accepts, in words) and `check(value) -> value` (may convert;
    raises Refused, or CnnlabError from a conversion such as loading a run)."""
    text: str
    check: Callable[[Any], Any]
    optional: bool = False  # None is accepted (and passed on unchanged)

    def __call__(self, value: Any) -> Any:
        if value is None and self.optional:
            return None
        if value is None:
            raise Refused()
        return self.check(value)

    def or_none(self) -> "Accepts":
        return Accepts(self.text + " or None", self.check, optional=True)


def _is_int(v: Any) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _is_real(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def _range_text(low=None, high=None, gt=None, lt=None) -> str:
    parts = ([f">= {low:,}" if _is_int(low) else f">= {low:g}"] if low is not None else []) + \
            ([f"> {gt:g}"] if gt is not None else []) + \
            ([f"<= {high:,}" if _is_int(high) else f"<= {high:g}"] if high is not None else []) + \
            ([f"< {lt:g}"] if lt is not None else [])
    return " and ".join(parts)


def _in_range(v, low=None, high=None, gt=None, lt=None) -> bool:
    return ((low is None or v >= low) and (high is None or v <= high) and (gt is None or v > gt)
            and (lt is None or v < lt))


def integer(low: int, high: int, what: str = "a whole number") -> Accepts:
    """An int (not a bool, not a float) in [low, high]; every count has a ceiling, so 'huge' is refused by name."""
    text = f"{what} {_range_text(low, high)}"

    def check(v):
        if not _is_int(v) or not _in_range(v, low, high):
            raise Refused()
        return int(v)
    return Accepts(text, check)


def number(low: Optional[float] = None, high: Optional[float] = None, *, gt: Optional[float] = None,
           lt: Optional[float] = None, what: str = "a finite number") -> Accepts:
    """A finite int or float (NaN passes every comparison, so it is refused by name) within the bounds."""
    text = f"{what} {_range_text(low, high, gt, lt)}".rstrip()

    def check(v):
        if not _is_real(v) or not math.isfinite(v) or not _in_range(v, low, high, gt, lt):
            raise Refused()  # NaN passes every comparison: it is refused by isfinite, by name
        return v
    return Accepts(text, check)


def flag() -> Accepts:
    def check(v):
        if not isinstance(v, bool):
            raise Refused()
        return v
    return Accepts("True or False", check)


def text(choices: Optional[Sequence[str]] = None, what: str = "a string") -> Accepts:
    """A str (one of `choices` when given: their home is the module that owns them, passed in here)."""
    desc = f"one of {', '.join(map(repr, choices))}" if choices else what

    def check(v):
        if not isinstance(v, str):
            raise Refused()
        if choices and v not in choices:
            raise Refused(f"is not allowed (got {v!r})")
        return v
    return Accepts(desc, check)


def path(what: str = "a path (str or pathlib.Path)") -> Accepts:
    """A str or os.PathLike naming a file or folder (not empty, no NUL byte); passed on as given."""
    def check(v):
        if not isinstance(v, (str, os.PathLike)):
            raise Refused()
        s = os.fspath(v)
        if not isinstance(s, str) or s == "" or "\0" in s:
            raise Refused("must be a non-empty path without NUL bytes (got " + shown(v) + ")")
        return v
    return Accepts(what, check)


def sequence(item: Accepts, *, min_len: int = 0, max_len: int = 10**7, what: str = "a list",
             one: bool = False) -> Accepts:
    """A list or tuple whose items each pass `item` (a str is refused: it would be taken one character at a time);
    with `one`, a single item where the list is expected is taken as a one-item list."""
    count = (f"{min_len}" if min_len == max_len else f"{min_len} to {max_len}" if max_len < 10**7 else
             f"{min_len} or more" if min_len else "")
    desc = f"{what} ({count + ', ' if count else ''}each {item.text})" + \
        (", or a single one (a one-item list)" if one else "")

    def check(v):
        if one and not isinstance(v, (list, tuple)):
            try:
                return [item(v)]
            except Refused:
                raise Refused() from None
        if not isinstance(v, (list, tuple)):
            raise Refused()
        if not min_len <= len(v) <= max_len:
            raise Refused(f"needs {count} items (got {len(v):,})")
        out = []
        for i, x in enumerate(v):
            try:
                out.append(item(x))
            except Refused as e:
                raise Refused(f"item {i} {e.problem or 'must be ' + item.text} (got {shown(x)})") from None
        return type(v)(out) if isinstance(v, tuple) else out
    return Accepts(desc, check)


def instance(cls: Any, what: str, convert: Optional[Callable[[Any], Any]] = None,
             convertible: tuple = ()) -> Accepts:
    """An instance of `cls` (a class or a tuple of them); a value of a `convertible` type is converted first (e.g. a
    run folder, loaded into a run): errors of the conversion name the argument too."""
    def check(v):
        if isinstance(v, cls):
            return v
        if convert is not None and isinstance(v, convertible):
            return convert(v)
        raise Refused()
    return Accepts(what, check)


def function(what: str = "a callable") -> Accepts:
    def check(v):
        if not callable(v):
            raise Refused()
        return v
    return Accepts(what, check)


def mapping(what: str = "a dict", min_len: int = 0, value: Optional[Accepts] = None) -> Accepts:
    def check(v):
        if not isinstance(v, dict):
            raise Refused()
        if len(v) < min_len:
            raise Refused(f"needs at least {min_len} entr{'y' if min_len == 1 else 'ies'} (got {len(v)})")
        if value is not None:
            for k, x in v.items():
                try:
                    value(x)
                except Refused as e:
                    raise Refused(f"entry {k!r} {e.problem or 'must be ' + value.text} (got {shown(x)})") from None
        return v
    return Accepts(what, check)


def anything(what: str) -> Accepts:
    return Accepts(what, lambda v: v, optional=True)


def either(*choices: Accepts) -> Accepts:
    """The first of `choices` that accepts the value."""
    def check(v):
        for a in choices:
            try:
                return a(v)
            except Refused:
                continue
        raise Refused()
    return Accepts(" or ".join(a.text for a in choices), check, optional=any(a.optional for a in choices))


# -- applying the contracts -------------------------------------------------------------------------------------------

def check_arguments(where: str, accepts: dict, arguments: dict) -> None:
    """Check (and convert in place) each named argument; the first refusal is a CnnlabError naming `where`, the
    argument, what it accepts and what it got."""
    for name, a in accepts.items():
        if name not in arguments:
            continue
        value = arguments[name]
        try:
            arguments[name] = a(value)
        except Refused as e:
            raise CnnlabError(f"{where}: argument {name!r} {e.problem or 'must be ' + a.text + ', got ' + shown(value)}"
                              f"{'; it accepts ' + a.text if e.problem else ''}") from None
        except CnnlabError as e:  # from a conversion (a run folder that is not one, a spec that does not parse)
            raise CnnlabError(f"{where}: argument {name!r}: {e}") from None


def checked(*, then: Optional[Callable[[str, dict], None]] = None, **accepts: Accepts) -> Callable:
    """Decorator: check every argument of a function (or of a class's `__init__`) against `accepts` before it runs.

    Every parameter must have an entry (a new parameter without one is a TypeError when the module is imported, so
    no argument goes unchecked); `then(where, arguments)` checks what depends on several of them (e.g. memory)."""
    def deco(fn: Callable) -> Callable:
        sig = inspect.signature(fn)
        params = [p for p in sig.parameters.values() if p.name != "self"
                  and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
        missing = [p.name for p in params if p.name not in accepts]
        extra = [n for n in accepts if n not in sig.parameters]
        if missing or extra:
            raise TypeError(f"checked({fn.__qualname__}): no contract for {missing}, contracts for no parameter "
                            f"{extra}")
        where = fn.__qualname__.replace(".__init__", "")

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            try:
                bound = sig.bind(*args, **kwargs)
            except TypeError as e:  # a missing or unexpected argument: Python's message names it
                raise CnnlabError(f"{where}: {e}") from None
            arguments = bound.arguments
            check_arguments(where, accepts, arguments)
            if then is not None:
                then(where, arguments)
            return fn(*bound.args, **bound.kwargs)

        lines = [f"    {p.name}: {accepts[p.name].text}" for p in params]
        wrapper.__doc__ = (fn.__doc__ or "").rstrip() + "\n\nArguments (checked before the call; a refusal is a " \
            "CnnlabError naming the argument):\n" + "\n".join(lines) + "\n"
        wrapper.accepts = dict(accepts)
        return wrapper
    return deco
