"""Name -> factory registries (models, datasets, augmentations, optimizers, schedules ...).

Following timm / torchvision: a dict filled by a decorator, duplicate names rejected at import time, and a lookup
that fails with the list of valid names.
"""

from __future__ import annotations

import difflib
import inspect
from typing import Any, Callable, Dict, Iterator, Optional

from cnnlab.errors import CnnlabError


class Registry:
    """A named collection of factories. `kind` is used in error messages ("unknown model 'x'")."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: Dict[str, Callable[..., Any]] = {}

    def register(self, name: Optional[str] = None) -> Callable[[Callable], Callable]:
        def deco(fn: Callable) -> Callable:
            key = (name or fn.__name__).lower()
            if key in self._items:
                raise ValueError(f"duplicate {self.kind} name {key!r}: already registered by {self._items[key]!r}")
            self._items[key] = fn
            return fn

        return deco

    def get(self, name: str) -> Callable[..., Any]:
        if not isinstance(name, str):
            raise CnnlabError(f"{self.kind} name must be a string, got {name!r}; known: {', '.join(self.names())}")
        by_norm = {_norm(k): k for k in self._items}  # fashion-mnist, fashion_mnist and Fashion-MNIST are one name
        if _norm(name) in by_norm:
            return self._items[by_norm[_norm(name)]]
        close = difflib.get_close_matches(name.lower(), self.names(), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise CnnlabError(f"unknown {self.kind} {name!r}{hint}; known {self.kind}s: {', '.join(self.names())}")

    def build(self, name: str, **kwargs: Any) -> Any:
        """Call the factory, rejecting keyword arguments it does not take with a message naming the valid ones."""
        fn = self.get(name)
        check_kwargs(fn, kwargs, f"{self.kind} {name!r}")
        return fn(**kwargs)

    def names(self) -> list:
        return sorted(self._items)

    def __contains__(self, name: str) -> bool:
        return isinstance(name, str) and _norm(name) in {_norm(k) for k in self._items}

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)


def _norm(name: str) -> str:
    return name.lower().replace("-", "_")


def keyword_defaults(fn: Callable) -> Dict[str, Any]:
    """The defaults of `fn`'s keyword arguments, e.g. a registry entry's options as they are when left out."""
    params = inspect.signature(fn).parameters.items()
    return {k: p.default for k, p in params if p.default is not inspect.Parameter.empty}


def check_kwargs(fn: Callable, kwargs: Dict[str, Any], what: str) -> None:
    """Raise CnnlabError if `fn` does not accept every key of `kwargs` (unless it takes **kwargs)."""
    sig = inspect.signature(fn)
    params = sig.parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    valid = [n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    bad = [k for k in kwargs if k not in valid]
    if bad:
        close = difflib.get_close_matches(str(bad[0]), valid, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise CnnlabError(f"{what} does not take option(s) {', '.join(map(repr, bad))}{hint}; valid options: "
                          f"{', '.join(valid)}")


def variant(builder: Callable[..., Any], **bound: Any) -> Callable[..., Any]:
    """A registry entry that is `builder` with some arguments fixed (timm's one-line model entries): it takes the
    builder's other keyword arguments, with their defaults, and its signature says so, so option checking
    (`check_kwargs`) and defaults (`inspect.signature`) see exactly the options a user may pass."""
    sig = inspect.signature(builder)
    for key in bound:
        if key not in sig.parameters:
            raise TypeError(f"{builder.__name__} has no parameter {key!r}")

    def entry(**options: Any) -> Any:
        return builder(**bound, **options)

    entry.__signature__ = sig.replace(parameters=[p for n, p in sig.parameters.items() if n not in bound])
    entry.__name__ = entry.__qualname__ = str(bound.get("name", builder.__name__))
    entry.__doc__ = builder.__doc__
    entry.__wrapped_builder__ = builder  # for inspect.getsourcefile and readers of the code
    return entry
