"""The web layer's message catalogs: every string the templates and the Python code mark for
translation (extracted now, with Babel's extractors and ``web/babel.cfg``, as ``pybabel
extract`` does) has a non-empty translation in each language; no catalog has a fuzzy, obsolete
or unused entry, or a translation whose placeholders differ from its msgid's."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po

from strongroom.web import i18n

WEB = Path(i18n.__file__).parent
KEYWORDS = {"_": None, "gettext": None, "ngettext": (1, 2), "N_": None}
PLACEHOLDER = re.compile(r"%\(([A-Za-z_][A-Za-z0-9_]*)\)[sdif]")


def extracted() -> set[str]:
    """Every msgid used in the web layer's templates and Python modules."""
    with (WEB / "babel.cfg").open() as config:
        method_map, options_map = parse_mapping_cfg(config)
    found = set()
    for _file, _line, message, _comments, _context in extract_from_dir(
        WEB, method_map, options_map, keywords=KEYWORDS
    ):
        found.add(message if isinstance(message, str) else message[0])
    return found


def _named(text: str) -> set[str]:
    """The ``%(name)s`` placeholders of a string."""
    return set(PLACEHOLDER.findall(text))


def read_catalog(path: Path) -> Catalog:
    with path.open("rb") as source:
        return read_po(source)


def problems(used: set[str], catalog: Catalog) -> list[str]:
    """What is wrong with one language's catalog, given the msgids in use."""
    found = []
    entries = {message.id: message for message in catalog if message.id}
    for msgid in sorted(used):
        entry = entries.get(msgid)
        if entry is None:
            found.append(f"missing: {msgid!r}")
        elif not entry.string or (isinstance(entry.string, tuple) and not all(entry.string)):
            found.append(f"untranslated: {msgid!r}")
    for msgid, entry in entries.items():
        if entry.fuzzy:
            found.append(f"fuzzy: {msgid!r}")
        if msgid not in used:
            found.append(f"not used anywhere: {msgid!r}")
        strings = entry.string if isinstance(entry.string, tuple) else (entry.string,)
        if any(entry.string) and any(_named(text) != _named(msgid) for text in strings):
            found.append(f"placeholders: {msgid!r}: the translation must use {_named(msgid)}")
        found.extend(f"placeholders: {msgid!r}: {error}" for error in entry.check(catalog))
    found.extend(f"obsolete: {msgid!r}" for msgid in catalog.obsolete)
    return found


def test_the_extraction_finds_strings_of_templates_and_python() -> None:
    used = extracted()
    assert "Sign in" in used  # lite/signin.html
    assert "Hello, %(name)s" in used  # a {% trans %} block of lite/home.html
    assert "The email or password is wrong." in used  # N_() in lite/account.py
    assert "Strongroom Wallet" in used  # lang.gettext() in lite/pwa.py
    assert len(used) >= 50


@pytest.mark.parametrize("language", i18n.LANGUAGES)
def test_every_string_is_translated(language: str) -> None:
    path = i18n.LOCALE_DIRECTORY / language / "LC_MESSAGES" / "messages.po"
    assert problems(extracted(), read_catalog(path)) == []


def test_the_template_lists_exactly_the_strings_in_use() -> None:
    template = read_catalog(i18n.LOCALE_DIRECTORY / "messages.pot")
    assert {message.id for message in template if message.id} == extracted()


def test_a_missing_or_empty_translation_is_caught() -> None:
    """The check above fails when a string is missing in either language."""
    used = extracted()
    for language in i18n.LANGUAGES:
        path = i18n.LOCALE_DIRECTORY / language / "LC_MESSAGES" / "messages.po"
        catalog = read_catalog(path)
        catalog.delete("Sign in")
        assert "missing: 'Sign in'" in problems(used, catalog)
        catalog = read_catalog(path)
        catalog["Refresh"].string = ""
        assert "untranslated: 'Refresh'" in problems(used, catalog)
        catalog = read_catalog(path)
        catalog["Hello, %(name)s"].string = "Hello"
        catalog["Home"].flags.add("fuzzy")
        catalog.add("Not in any template", "x")
        found = problems(used, catalog)
        assert any(line.startswith("placeholders: 'Hello, %(name)s'") for line in found)
        assert "fuzzy: 'Home'" in found
        assert "not used anywhere: 'Not in any template'" in found
    assert problems(used | {"A new string"}, catalog)[0] == "missing: 'A new string'"
