"""The words read as true or false, in a query string (``autoEnhance=``) and in a
setting (TOML, environment, flags): one list for both."""

from __future__ import annotations

from typing import Final

TRUE_WORDS: Final = frozenset({"true", "1", "yes", "on"})
FALSE_WORDS: Final = frozenset({"false", "0", "no", "off"})


def truth(text: str) -> bool | None:
    """``text`` (any case) as True or False, or None when it is neither."""
    low = text.lower()
    if low in TRUE_WORDS:
        return True
    if low in FALSE_WORDS:
        return False
    return None
