"""Library-wide settings, scikit-learn style: :func:`get_config`, :func:`set_config` and
:func:`config_context`.

The one setting is ``max_memory``: the most extra memory a selector's ``fit`` may
allocate. Every selector estimates its peak up front
(:meth:`~sk_coreset.base.BaseSelector.estimate_memory`), chooses dense, blocked or
kNN-sparse kernels to stay under the limit, and refuses with a ``ValueError`` before
allocating anything when nothing fits. Settings are per thread, as in scikit-learn.
"""

from __future__ import annotations

import math
import numbers
import os
import re
import threading
from contextlib import contextmanager

__all__ = ["config_context", "get_config", "set_config"]

#: share of the physical memory that ``max_memory=None`` allows
DEFAULT_MEMORY_SHARE = 0.8

_GLOBAL = {"max_memory": None}
_LOCAL = threading.local()
_UNCHANGED = object()

_UNITS = {
    "": 1, "b": 1,
    "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9, "gb": 10**9,
    "t": 10**12, "tb": 10**12,
    "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40,
}
_SIZE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)\s*([a-z]*)\s*$", re.IGNORECASE)


def _settings() -> dict:
    if not hasattr(_LOCAL, "config"):
        _LOCAL.config = dict(_GLOBAL)
    return _LOCAL.config


def get_config() -> dict:
    """The current settings of this thread, as a new dict.

    Returns
    -------
    dict
        ``{"max_memory": int, float("inf") or None}``: the limit in bytes, or ``None``
        for the default, 80% of the machine's physical memory (no limit where that is
        unknown).

    Examples
    --------
    >>> import sk_coreset
    >>> sk_coreset.get_config()["max_memory"] is None
    True
    """
    return dict(_settings())


def set_config(max_memory=_UNCHANGED) -> None:
    """Change settings for this thread (and for threads started later from the defaults).

    Parameters
    ----------
    max_memory : int, float, str or None, optional
        The most extra memory a selector's ``fit`` may allocate beyond its inputs: bytes
        (``4 * 2**30``), a size string with a decimal (``"8GB"``, ``"500MB"``) or binary
        (``"512MiB"``, ``"1.5GiB"``) unit, ``float("inf")`` for no limit, or ``None``
        for the default, 80% of the physical memory. Left unchanged when not passed.
        Selectors with their own ``max_memory`` parameter use it instead unless it is
        ``None``.

    Examples
    --------
    >>> import sk_coreset
    >>> sk_coreset.set_config(max_memory="512MiB")
    >>> sk_coreset.get_config()["max_memory"]
    536870912
    >>> sk_coreset.set_config(max_memory=None)
    """
    if max_memory is not _UNCHANGED:
        _settings()["max_memory"] = parse_memory(max_memory)


@contextmanager
def config_context(*, max_memory=_UNCHANGED):
    """Settings inside a ``with`` block only; the previous ones come back on exit.

    Parameters
    ----------
    max_memory : int, float, str or None, optional
        As in :func:`set_config`.

    Examples
    --------
    >>> import sk_coreset
    >>> with sk_coreset.config_context(max_memory="1GB"):
    ...     sk_coreset.get_config()["max_memory"]
    1000000000
    >>> sk_coreset.get_config()["max_memory"] is None
    True
    """
    before = get_config()
    set_config(max_memory=max_memory)
    try:
        yield
    finally:
        _settings().update(before)


def parse_memory(value):
    """Bytes from an int, a float or a size string (``"8GB"``, ``"512MiB"``); None stays None.

    Examples
    --------
    >>> parse_memory("8GB"), parse_memory("512MiB"), parse_memory(1024)
    (8000000000, 536870912, 1024)
    """
    if value is None:
        return None
    if isinstance(value, str):
        match = _SIZE.match(value)
        unit = match and _UNITS.get(match.group(2).lower())
        if unit is None:
            raise ValueError(
                f"max_memory={value!r} is not a size; pass bytes (an int) or a number with "
                "a unit, e.g. '8GB', '500MB', '512MiB' or '1.5GiB'."
            )
        value = float(match.group(1)) * unit
    elif isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(
            f"max_memory must be bytes (an int), a size string such as '8GB' or None; got "
            f"{value!r}."
        )
    if not value > 0:
        raise ValueError(f"max_memory must be positive; got {value!r}.")
    return math.inf if math.isinf(value) else int(value)


def physical_memory() -> int | None:
    """The machine's physical memory in bytes, or None where the system does not say."""
    try:
        pages, size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None
    return pages * size if pages > 0 and size > 0 else None


def memory_limit(max_memory=None) -> float:
    """The limit in bytes: ``max_memory`` if given, else the library setting, else 80% of
    the physical memory (``inf`` where that is unknown)."""
    limit = parse_memory(max_memory)
    if limit is None:
        limit = _settings()["max_memory"]
    if limit is None:
        total = physical_memory()
        limit = math.inf if total is None else int(DEFAULT_MEMORY_SHARE * total)
    return limit


def format_bytes(nbytes: float) -> str:
    """``nbytes`` in binary units, e.g. ``'1.50 GiB'``."""
    if math.isinf(nbytes):
        return "no limit"
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if nbytes >= size:
            return f"{nbytes / size:.2f} {unit}"
    return f"{int(nbytes)} B"
