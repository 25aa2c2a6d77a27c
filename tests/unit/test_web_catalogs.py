"""The web layer's message catalogs, for each domain (``messages``: the Lite app and the shared
pages; ``console``: the operator console; ``reserves``: the proof-of-reserves pages and their
scripts): every string the templates, the Python code and the scripts mark for translation
(extracted now, with Babel's extractors and the domain's mapping, ``web/babel.cfg``,
``web/babel-console.cfg`` or ``web/babel-reserves.cfg``, as ``pybabel extract`` does) has a
non-empty translation in each language; no catalog has a fuzzy, obsolete or unused entry, or a
translation whose placeholders differ from its msgid's."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po

from strongroom.web import i18n
from strongroom.web.reserves import pages

WEB = Path(i18n.__file__).parent
KEYWORDS = {"_": None, "gettext": None, "ngettext": (1, 2), "N_": None}
PLACEHOLDER = re.compile(r"%\(([A-Za-z_][A-Za-z0-9_]*)\)[sdif]")


def extracted(domain: str = i18n.DOMAIN) -> set[str]:
    """Every msgid of ``domain`` used in its templates, Python modules and scripts (the mapping's
    patterns are relative to the mapping's own folder)."""
    mapping = WEB / i18n.BABEL_CONFIGS[domain]
    with mapping.open() as config:
        method_map, options_map = parse_mapping_cfg(config)
    found = set()
    for _file, _line, message, _comments, _context in extract_from_dir(
        mapping.parent, method_map, options_map, keywords=KEYWORDS
    ):
        found.add(message if isinstance(message, str) else message[0])
    return found


def _named(text: str) -> set[str]:
    """The ``%(name)s`` placeholders of a string."""
    return set(PLACEHOLDER.findall(text))


def _singular(msgid: str | tuple[str, ...]) -> str:
    return msgid if isinstance(msgid, str) else msgid[0]


def read_catalog(path: Path) -> Catalog:
    with path.open("rb") as source:
        return read_po(source)


def problems(used: set[str], catalog: Catalog) -> list[str]:
    """What is wrong with one language's catalog, given the msgids in use."""
    found = []
    # a plural entry's id is (singular, plural); the extraction gives its singular
    entries = {_singular(message.id): message for message in catalog if message.id}
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
        forms = entry.id if isinstance(entry.id, tuple) else (entry.id,)
        wanted = set().union(*(_named(form) for form in forms))
        named = [_named(text) for text in strings if text]
        if named and (any(not names <= wanted for names in named) or set().union(*named) != wanted):
            found.append(f"placeholders: {msgid!r}: the translation must use {wanted}")
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


def test_the_console_has_its_own_domain() -> None:
    console, messages = extracted("console"), extracted()
    assert "Audit log" in console  # console/layout.py
    assert "Operator sign in" in console  # templates/console/signin.html
    assert "Audit log" not in messages and "Operator sign in" not in messages
    assert "Sign in" in messages and "Sign in" not in console  # lite/signin.html
    assert len(console) >= 50


def _po(language: str, domain: str) -> Path:
    return i18n.LOCALE_DIRECTORY / language / "LC_MESSAGES" / f"{domain}.po"


@pytest.mark.parametrize("domain", i18n.DOMAINS)
@pytest.mark.parametrize("language", i18n.LANGUAGES)
def test_every_string_is_translated(language: str, domain: str) -> None:
    assert problems(extracted(domain), read_catalog(_po(language, domain))) == []


@pytest.mark.parametrize("domain", i18n.DOMAINS)
def test_the_template_lists_exactly_the_strings_in_use(domain: str) -> None:
    template = read_catalog(i18n.LOCALE_DIRECTORY / f"{domain}.pot")
    assert {_singular(message.id) for message in template if message.id} == extracted(domain)


def test_the_console_strings_are_in_the_languages_pages_use() -> None:
    """Both domains are merged into the translations the pages use."""
    chinese = i18n.lang_for("zh_Hant")
    assert chinese.gettext("Audit log") == "審計記錄"  # console.po
    assert chinese.gettext("Sign in") == "登入"  # messages.po


def test_a_missing_or_empty_translation_is_caught() -> None:
    """The check above fails when a string is missing in either language."""
    used = extracted()
    for language in i18n.LANGUAGES:
        path = _po(language, "messages")
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


@pytest.mark.parametrize("language", i18n.LANGUAGES)
def test_a_missing_console_translation_is_caught(language: str) -> None:
    used = extracted("console")
    catalog = read_catalog(_po(language, "console"))
    catalog.delete("Audit log")
    assert "missing: 'Audit log'" in problems(used, catalog)
    catalog = read_catalog(_po(language, "console"))
    catalog["Dashboard"].string = ""
    assert "untranslated: 'Dashboard'" in problems(used, catalog)


def test_the_reserves_pages_have_their_own_domain() -> None:
    reserves, messages, console = extracted("reserves"), extracted(), extracted("console")
    assert "Verify my proof of reserves" in reserves  # templates/reserves/verify.html
    assert (
        "Reserve sources (%(number)s)" in reserves
    )  # a {% trans %} of templates/reserves/index.html
    assert "Invalid: %(reasons)s" in reserves  # N_() in static/reserves/verify.js
    assert "%(leaf)s: root matches %(root)s" in reserves  # N_() in static/reserves/por_v1.js
    assert "Verify my proof of reserves" not in messages | console
    assert len(reserves) >= 100


def test_the_verify_page_gives_its_scripts_every_script_message() -> None:
    """The JSON block of the verify page carries exactly the scripts' msgids, found as the
    catalog's extraction finds them, translated."""
    scripts = set(pages.script_messages())
    assert scripts <= extracted("reserves")
    assert {"Valid", "Invalid: %(reasons)s", "Leaf %(number)s of %(count)s"} <= scripts
    assert "Verify my proof of reserves" not in scripts  # a template's string
    chinese = pages.script_i18n("zh_Hant")
    assert set(chinese["messages"]) == scripts
    assert chinese["messages"]["Valid"] == "有效"
    assert chinese["separator"] == "、" and pages.script_i18n("en")["separator"] == ", "
    english = pages.script_i18n("en")["messages"]
    assert all(english[message] == message for message in scripts)


def test_the_reserves_strings_are_in_the_languages_pages_use() -> None:
    chinese = i18n.lang_for("zh_Hant")
    assert chinese.gettext("Verify my proof of reserves") == "驗證我的儲備證明"  # reserves.po
    assert chinese.gettext("Sign in") == "登入"  # in messages.po and reserves.po: the same


@pytest.mark.parametrize("language", i18n.LANGUAGES)
def test_a_missing_reserves_translation_is_caught(language: str) -> None:
    used = extracted("reserves")
    catalog = read_catalog(_po(language, "reserves"))
    catalog.delete("Verify now")  # a template's string
    catalog.delete("Valid")  # a script's string
    found = problems(used, catalog)
    assert "missing: 'Verify now'" in found and "missing: 'Valid'" in found
    catalog = read_catalog(_po(language, "reserves"))
    catalog["Invalid: %(reasons)s"].string = "Invalid"
    catalog["Proof of reserves"].string = ""
    found = problems(used, catalog)
    assert "untranslated: 'Proof of reserves'" in found
    assert any(line.startswith("placeholders: 'Invalid: %(reasons)s'") for line in found)


@pytest.mark.parametrize("language", i18n.LANGUAGES)
def test_a_reserves_string_shared_with_another_domain_reads_the_same(language: str) -> None:
    """Where ``messages`` or ``console`` has a msgid too, its translation is the one the merged
    catalog uses: it must be the one ``reserves.po`` says."""
    reserves = {m.id: m.string for m in read_catalog(_po(language, "reserves")) if m.id}
    shared = 0
    for domain in ("messages", "console"):
        for message in read_catalog(_po(language, domain)):
            if message.id in reserves:
                shared += 1
                assert message.string == reserves[message.id], (domain, message.id)
    assert shared >= 3  # "Sign in", "Email", "Password", ...
