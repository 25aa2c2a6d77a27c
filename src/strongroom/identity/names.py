"""What may be shown of another user's name (issue #10, finding 6): the send-review step names
the recipient of an email address so the sender can recognise them, but must not hand anyone
the full name behind any address they type."""

from __future__ import annotations

from typing import Final

WORDS_SHOWN_MAX: Final = 4
MASK: Final = "**"


def masked(name: str) -> str:
    """Each word's first letter and a fixed mask (``Chan Tai Man`` → ``C** T** M**``; a name
    without spaces, as Chinese names are written, → ``陳**``): enough to recognise someone one
    knows, and the same length whatever the name, so it tells no more."""
    words = name.split()[:WORDS_SHOWN_MAX]
    return " ".join(word[0] + MASK for word in words) or MASK
