"""Boolean words in text (dataset specs, option values): parsed, never cast.

``bool("false")`` is True, so a value like ``reverse=false`` must be parsed; this is the one
parser every reader of boolean text uses (the CLI's :func:`panoplace.cli.argtypes.boolean`
too).

>>> parse_bool("No"), parse_bool("1")
(False, True)
"""

from __future__ import annotations

from panoplace.errors import InputError

__all__ = ["BOOLEAN_FALSE", "BOOLEAN_TRUE", "parse_bool"]

BOOLEAN_TRUE = ("true", "yes", "on", "1")
BOOLEAN_FALSE = ("false", "no", "off", "0")


def parse_bool(text: object, what: str = "value") -> bool:
    """``true/yes/on/1`` -> True, ``false/no/off/0`` -> False (any case, surrounding spaces
    ignored); a ``bool`` is returned as is; anything else raises :class:`InputError` naming
    ``what``."""
    if isinstance(text, bool):
        return text
    s = str(text).strip().lower()
    if s in BOOLEAN_TRUE:
        return True
    if s in BOOLEAN_FALSE:
        return False
    raise InputError(f"{what} must be a boolean (true/false, yes/no, on/off, 1/0), got {text!r}")
