"""The words read as true or false, in a query string and in a setting."""

from __future__ import annotations

from typing import Final

TRUE_WORDS: Final = frozenset({"true", "1", "yes"})
FALSE_WORDS: Final = frozenset({"false", "0", "no"})
# A setting also takes on/off, as environment variables often say it; a query string
# takes only the words above (API.md §5.1).
_SWITCH_TRUE: Final = TRUE_WORDS | {"on"}
_SWITCH_FALSE: Final = FALSE_WORDS | {"off"}


def truth(text: str, switch: bool = False) -> bool | None:
    """``text`` (any case) as True or False, or None when it is neither; ``switch``
    also accepts on/off."""
    low = text.lower()
    if low in (_SWITCH_TRUE if switch else TRUE_WORDS):
        return True
    if low in (_SWITCH_FALSE if switch else FALSE_WORDS):
        return False
    return None
