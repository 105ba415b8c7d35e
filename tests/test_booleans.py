"""Boolean words are parsed, never cast (``bool("false")`` is True)."""

import pytest

from panoplace.booleans import parse_bool
from panoplace.errors import InputError


def test_words_and_refusals() -> None:
    assert [parse_bool(w) for w in ("true", "YES", " on ", "1", True)] == [True] * 5
    assert [parse_bool(w) for w in ("false", "No", "off", "0", False)] == [False] * 5
    for word in ("", "maybe", "2", "none"):
        with pytest.raises(InputError, match="reverse must be a boolean"):
            parse_bool(word, "reverse")
