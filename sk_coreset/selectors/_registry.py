"""The selector name registry behind :func:`make_selector` and :func:`available_selectors`."""

from __future__ import annotations

from ..base import BaseSelector

# class -> extra names; the class name itself is always registered.
_ALIASES: dict[type, tuple[str, ...]] = {}


def _key(name: str) -> str:
    return name.lower().replace("_", "").replace("-", "").replace(" ", "")


def _table() -> dict[str, type]:
    return {_key(n): cls for cls, aliases in _ALIASES.items() for n in (cls.__name__, *aliases)}


def register_selector(*aliases: str):
    """Class decorator: register a :class:`BaseSelector` under its name and ``aliases``.

    Examples
    --------
    >>> from sk_coreset.base import ScoreSelector
    >>> @register_selector("MyScore")
    ... class MyScoreSelector(ScoreSelector):
    ...     def _score(self, signals, y, random_state):
    ...         return signals["scores"]
    """

    def decorate(cls):
        if not (isinstance(cls, type) and issubclass(cls, BaseSelector)):
            raise TypeError(f"{cls!r} is not a BaseSelector subclass.")
        taken = _table()
        for name in (cls.__name__, *aliases):
            other = taken.get(_key(name))
            if other is not None and other.__qualname__ != cls.__qualname__:
                raise ValueError(f"selector name {name!r} is already taken by {other.__name__}.")
        _ALIASES[cls] = tuple(aliases)
        return cls

    return decorate


def available_selectors() -> list[str]:
    """Class names of every registered selector, in registration order."""
    return [cls.__name__ for cls in _ALIASES]


def make_selector(name: str, **params) -> BaseSelector:
    """Build a selector from its class name or paper name, matched case-insensitively.

    Examples
    --------
    >>> from sk_coreset.selectors import make_selector
    >>> make_selector("uniform", fraction=0.05)
    RandomSelector(fraction=0.05)
    """
    cls = _table().get(_key(str(name)))
    if cls is None:
        names = ", ".join(available_selectors())
        raise ValueError(f"Unknown selector {name!r}. Available selectors: {names}.")
    return cls(**params)
