"""Same-name matching for bank accounts (R-FUND-2): a holder name is the user's own verified
legal name when both compare equal after normalising. Pure: no I/O.

The rules (decided here; the worked examples are in tests/unit/test_banking_names.py):

- Unicode NFKC (full-width letters are plain ones), then case folding (``casefold``), then
  diacritics dropped from letters (``José`` = ``Jose``: banks' systems often cannot store them).
- Latin (and any other spaced script): the name is split into words at spaces and punctuation
  (commas, full stops, hyphens, slashes...): ``chan, tai-man`` is the words ``chan tai man``.
  Apostrophes join (``O'Brien`` = ``OBrien``). Words compare as a multiset: any order of given
  and family names matches (``CHAN Tai Man`` = ``Tai Man Chan``), but every word must be there
  exactly as often: ``Chan Tai Man`` ≠ ``Chan Tai``, an initial is not a name (``T M Chan`` ≠
  ``Tai Man Chan``), and words are never joined (``Chan Taiman`` ≠ ``Chan Tai Man``).
- Han characters (and kana, Hangul), which names are written in without spaces, compare
  character by character in order, spaces and punctuation ignored: ``陳大文`` = ``陳 大文`` =
  ``陳·大文``, but ``大文陳`` ≠ ``陳大文``.
- Simplified and traditional characters are NOT equated (``陈大文`` ≠ ``陳大文``): the mapping is
  one-to-many and depends on context, and no well-kept library is in the dependencies; a user
  links with the characters of their verified document. Likewise a name in Han characters
  never matches its romanisation (``陳大文`` ≠ ``Chan Tai Man``): there are several systems.
- A name with both (``陳大文 CHAN Tai Man``) matches when both parts match.
- Titles are not stripped (``Mr Chan Tai Man`` ≠ ``Chan Tai Man``); a name with nothing left
  after normalising matches nothing.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import Final

APOSTROPHES: Final = frozenset("'\u2019\u02bc`")
# spaceless scripts: compared character by character
_SPACELESS_RANGES: Final = (
    (0x3040, 0x30FF),  # hiragana, katakana
    (0x3400, 0x4DBF),  # CJK extension A
    (0x4E00, 0x9FFF),  # CJK unified ideographs
    (0xAC00, 0xD7AF),  # Hangul syllables
    (0xF900, 0xFAFF),  # CJK compatibility ideographs
    (0x20000, 0x3134F),  # CJK extensions B-G
)


def _spaceless(char: str) -> bool:
    point = ord(char)
    return any(low <= point <= high for low, high in _SPACELESS_RANGES)


@dataclass(frozen=True, slots=True)
class NameKey:
    """What two names are compared by: the words (any order) and the spaceless characters (in
    order)."""

    words: tuple[str, ...]
    characters: str

    @property
    def empty(self) -> bool:
        return not self.words and not self.characters


def _fold(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).casefold()
    # drop combining marks from letters, then compose again (Hangul recomposes; NFKC keeps
    # what NFKD split that has no mark)
    decomposed = unicodedata.normalize("NFD", text)
    stripped = "".join(c for c in decomposed if unicodedata.category(c) != "Mn")
    return unicodedata.normalize("NFC", stripped)


def key(name: str) -> NameKey:
    words: list[str] = []
    characters: list[str] = []
    word: list[str] = []

    def end_word() -> None:
        if word:
            words.append("".join(word))
            word.clear()

    for char in _fold(name):
        if _spaceless(char):
            end_word()
            characters.append(char)
        elif char in APOSTROPHES:
            continue
        elif unicodedata.category(char)[0] in ("L", "N"):
            word.append(char)
        else:  # spaces, punctuation, symbols separate words
            end_word()
    end_word()
    return NameKey(words=tuple(sorted(words)), characters="".join(characters))


def same_name(first: str, second: str) -> bool:
    """Whether two names are the same person's name by the rules above."""
    a, b = key(first), key(second)
    if a.empty or b.empty:
        return False
    return a == b  # the words are sorted: equal tuples are equal multisets
