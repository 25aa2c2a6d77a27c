"""Same-name matching (R-FUND-2, issue #12 item 2): the worked examples that must match and
the ones that must not (the rules are in strongroom/banking/names.py)."""

from __future__ import annotations

import pytest

from strongroom.banking.names import same_name

LEGAL = "CHAN Tai Man"

MATCH = [
    ("CHAN Tai Man", "Chan Tai Man"),  # case
    ("CHAN Tai Man", "Tai Man Chan"),  # given and family name in either order
    ("CHAN Tai Man", "chan, tai-man"),  # punctuation; a hyphen separates words
    ("CHAN Tai Man", "  Chan   Tai\tMan "),  # spacing
    ("CHAN Tai Man", "ＣＨＡＮ ＴＡＩ ＭＡＮ"),  # full-width letters (NFKC)
    ("CHAN Tai Man", "Man, Tai. Chan"),
    ("José García", "JOSE GARCIA"),  # diacritics dropped
    ("Seán O'Brien", "Sean OBrien"),  # apostrophes join
    ("陳大文", "陳 大文"),  # Han characters with and without spaces
    ("陳大文", "陳·大文"),
    ("陳大文", " 陳 大 文 "),
    ("陳大文 CHAN Tai Man", "Chan Tai Man 陳大文"),  # both scripts, each matching
    ("김민준", "김 민준"),  # Hangul, like Han
    ("Straße Anna", "STRASSE anna"),  # casefold: ß is ss
]

NO_MATCH = [
    ("Chan Tai Man", "Chan Tai"),  # a name left out
    ("Chan Tai", "Chan Tai Man"),  # a name added
    ("Chan Tai Man", "T M Chan"),  # initials are not names
    ("Chan Tai Man", "T. M. Chan"),
    ("Chan Tai Man", "Chan Taiman"),  # words are never joined
    ("Chan Tai Man", "Chan Tai Man Man"),  # each word as often
    ("Chan Tai Man", "Chen Tai Man"),
    ("Chan Tai Man", "Mr Chan Tai Man"),  # titles are not stripped
    ("陳大文", "陈大文"),  # simplified and traditional are not equated
    ("陳大文", "大文陳"),  # Han characters compare in order
    ("陳大文", "陳大"),
    ("陳大文", "Chan Tai Man"),  # no romanisation
    ("陳大文 Chan Tai Man", "陳大文"),  # both parts must match
    ("Chan Tai Man", ""),
    ("", ""),  # an empty name matches nothing
    ("...", "---"),
    ("Seán O'Brien", "Sean O Brien"),
]


@pytest.mark.parametrize(("first", "second"), MATCH)
def test_same_names_match_both_ways(first: str, second: str) -> None:
    assert same_name(first, second)
    assert same_name(second, first)


@pytest.mark.parametrize(("first", "second"), NO_MATCH)
def test_different_names_do_not_match(first: str, second: str) -> None:
    assert not same_name(first, second)
    assert not same_name(second, first)


def test_the_legal_name_matches_itself() -> None:
    assert same_name(LEGAL, LEGAL)
