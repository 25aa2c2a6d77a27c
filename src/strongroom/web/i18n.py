"""Languages of the web pages: English and Traditional Chinese (issue #5, part 3).

Every string a page shows is a msgid in the gettext catalogs under ``locale/``, one domain per
part (``DOMAINS``): ``messages`` (the Lite app and the pages every part shares), ``console``
(the operator console) and ``reserves`` (the public proof-of-reserves pages), each a
``<domain>.pot`` and one ``<locale>/LC_MESSAGES/<domain>.po`` per language. They are read from
the ``.po`` files once, at first use (``babel.messages.pofile.read_po``, compiled in memory), so
nothing has to be compiled at install, and merged into one catalog per language; where two
domains have a msgid, the earlier domain's translation is the one used (``messages`` first, so
no other part's catalog changes a Lite page).
``BABEL_CONFIGS`` says which mapping finds each domain's strings; ``README.md`` (in this folder)
has the ``pybabel`` commands that refresh the catalogs after a template or a message changed.
``tests/unit/test_web_catalogs.py`` fails until every string of each domain has a translation in
both languages.

The language of a request: the ``lang`` cookie (set by the visible switch), else the best match
of ``Accept-Language``, else English. Amounts are formatted from exact minor units
(``strongroom.money.format_amount``) with the locale's grouping and decimal symbols from Babel's
locale data, never through a float; dates with Babel in Hong Kong time.
"""

from __future__ import annotations

import gettext as gettext_module
import io
from dataclasses import dataclass
from datetime import datetime, tzinfo
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from pathlib import Path
from typing import Final

from babel import Locale
from babel.dates import format_datetime, get_timezone
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import get_decimal_symbol, get_group_symbol
from babel.support import Translations
from fastapi import Request

from strongroom.errors import invariant, present
from strongroom.money import format_amount

LOCALE_DIRECTORY: Final = Path(__file__).parent / "locale"
DOMAIN: Final = "messages"
DOMAINS: Final = (DOMAIN, "console", "reserves")
BABEL_CONFIGS: Final = {
    DOMAIN: "babel.cfg",
    "console": "babel-console.cfg",
    "reserves": "babel-reserves.cfg",
}
"""The extraction mapping of each domain, relative to this folder (its patterns too)."""
DEFAULT_LANGUAGE: Final = "en"
LANGUAGES: Final = ("en", "zh_Hant")
"""Locale ids, as the catalog folders are named."""
LANGUAGE_COOKIE: Final = "lang"
LANGUAGE_COOKIE_MAX_AGE_S: Final = 365 * 24 * 3600
ACCEPT_LANGUAGE_MAX_CHARS: Final = 1000
ACCEPT_LANGUAGE_MAX_ITEMS: Final = 30
DISPLAY_TIMEZONE: Final = "Asia/Hong_Kong"
"""Both regions (HK, CN) are UTC+8; pages show times there, with the zone named."""


def N_(message: str) -> str:  # noqa: N802  (the gettext convention for "mark, translate later")
    """Mark ``message`` for extraction without translating it now (module-level messages);
    translate it at render time with ``Lang.gettext``."""
    return message


def _read(language: str, domain: str) -> Translations:
    path = LOCALE_DIRECTORY / language / "LC_MESSAGES" / f"{domain}.po"
    with path.open("rb") as source:
        catalog = read_po(source, locale=language, domain=domain)
    compiled = io.BytesIO()
    write_mo(compiled, catalog, use_fuzzy=False)
    compiled.seek(0)
    return Translations(compiled, domain=domain)


@lru_cache(maxsize=len(LANGUAGES))
def translations(language: str) -> Translations:
    """The catalog of ``language``: every domain's ``.po``, compiled in memory and merged, the
    earlier of ``DOMAINS`` merged later so that their translations win (``messages`` first)."""
    invariant(language in LANGUAGES, f"unknown language {language!r}")
    merged = _read(language, DOMAINS[-1])
    for domain in reversed(DOMAINS[:-1]):
        merged.merge(_read(language, domain))
    return merged


@dataclass(frozen=True, slots=True)
class Lang:
    """One request's language: its translations and its formats."""

    code: str
    locale: Locale
    catalog: gettext_module.NullTranslations

    @property
    def html_lang(self) -> str:
        """BCP 47 for ``<html lang>``: ``en``, ``zh-Hant``."""
        return self.code.replace("_", "-")

    def gettext(self, message: str) -> str:
        return self.catalog.gettext(message)

    def ngettext(self, singular: str, plural: str, count: int) -> str:
        return self.catalog.ngettext(singular, plural, count)

    def amount(self, amount_minor: int, scale: int) -> str:
        """``123456789`` at scale 2 → ``1,234,567.89`` (en), with the locale's symbols and
        grouping; every digit of the exact minor units, no rounding."""
        plain = format_amount(amount_minor, scale)
        sign = "-" if plain.startswith("-") else ""
        whole, _, fraction = plain.lstrip("-").partition(".")
        grouped = _group(whole, self.locale, get_group_symbol(self.locale))
        decimal = get_decimal_symbol(self.locale) if fraction else ""
        return f"{sign}{grouped}{decimal}{fraction}"

    def when(self, moment: datetime) -> str:
        """A medium date and time in Hong Kong time, e.g. ``Jan 2, 2026, 11:04:00 AM``."""
        invariant(moment.tzinfo is not None, "format aware datetimes only")
        return format_datetime(moment, "medium", tzinfo=_timezone(), locale=self.locale)


def _group(digits: str, locale: Locale, symbol: str) -> str:
    """Group an integer's digits as the locale's decimal pattern says (3,3 or e.g. 3,2)."""
    pattern = locale.decimal_formats[None]
    primary, secondary = pattern.grouping
    if len(digits) <= primary:
        return digits
    groups = [digits[-primary:]]
    rest = digits[:-primary]
    while rest:
        groups.append(rest[-secondary:])
        rest = rest[:-secondary]
    return symbol.join(reversed(groups))


@lru_cache(maxsize=1)
def _timezone() -> tzinfo:
    return get_timezone(DISPLAY_TIMEZONE)


@lru_cache(maxsize=len(LANGUAGES))
def lang_for(code: str) -> Lang:
    """The ``Lang`` of one of ``LANGUAGES``."""
    invariant(code in LANGUAGES, f"unknown language {code!r}")
    return Lang(code=code, locale=Locale.parse(code), catalog=translations(code))


def match_language(tag: str) -> str | None:
    """The catalog for one Accept-Language tag: ``en-GB`` → ``en``; every Chinese tag
    (``zh-Hant``, ``zh-TW``, ``zh-HK``, ``zh``, also ``zh-CN``: Traditional is the Chinese we
    have, and reads better to a Simplified reader than English) → ``zh_Hant``; else None."""
    primary = tag.strip().lower().replace("_", "-").split("-", 1)[0]
    if primary == "en":
        return "en"
    if primary == "zh":
        return "zh_Hant"
    return None


def negotiate(accept_language: str | None) -> str:
    """The best of ``LANGUAGES`` for an Accept-Language header (RFC 9110 weights)."""
    if not accept_language:
        return DEFAULT_LANGUAGE
    weighted: list[tuple[Decimal, int, str]] = []
    items = accept_language[:ACCEPT_LANGUAGE_MAX_CHARS].split(",")[:ACCEPT_LANGUAGE_MAX_ITEMS]
    for position, item in enumerate(items):
        tag, _, parameters = item.partition(";")
        weight = _weight(parameters)
        language = match_language(tag)
        if language is not None and weight > 0:
            weighted.append((-weight, position, language))
    return min(weighted)[2] if weighted else DEFAULT_LANGUAGE


def _weight(parameters: str) -> Decimal:
    """The tag's ``q`` (1 when absent; 0, i.e. not acceptable, when unreadable or out of
    0..1), read exactly: no binary floats anywhere near the web layer."""
    name, _, value = parameters.strip().partition("=")
    if name.strip() != "q":
        return Decimal(1)
    try:
        weight = Decimal(value)
    except InvalidOperation:
        return Decimal(0)
    return weight if weight.is_finite() and 0 <= weight <= 1 else Decimal(0)


def lang_of(request: Request) -> Lang:
    """The request's language: the ``lang`` cookie, else Accept-Language (kept on the request)."""
    cached = getattr(request.state, "web_lang", None)
    if isinstance(cached, Lang):
        return cached
    # the name cookies.put gave it: __Host-lang over https, lang on plain http (web.cookies)
    chosen = request.cookies.get(f"__Host-{LANGUAGE_COOKIE}") or request.cookies.get(
        LANGUAGE_COOKIE
    )
    if chosen not in LANGUAGES:
        chosen = negotiate(request.headers.get("accept-language"))
    result = lang_for(present(chosen, "a language is chosen"))
    request.state.web_lang = result
    return result
