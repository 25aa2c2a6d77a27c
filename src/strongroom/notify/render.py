"""Render an email from the registry, with the anti-phishing banner on top (R-APC-2, R-MAIL-2).

The banner is added here, once, for every template: the plain-text part starts with the line
``Anti-phishing code: XXXX`` and the HTML part shows it as the first thing in its body. Templates
only write their bodies, so none can leave the banner out, and the result is checked before it
is returned.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache

from jinja2 import Environment, PackageLoader, StrictUndefined, Template
from markupsafe import Markup

from strongroom.errors import invariant
from strongroom.notify import templates

BANNER_LABEL = "Anti-phishing code"
CODE_PATTERN = re.compile(r"[A-Za-z0-9]{1,6}")
SUBJECT_MAX_CHARS = 200


@dataclass(frozen=True, slots=True)
class RenderedEmail:
    template_id: str
    subject: str
    text: str
    html: str


def banner_text(code: str) -> str:
    return f"{BANNER_LABEL}: {code}"


def banner_html(code: str) -> Markup:
    return Markup(
        '<div id="anti-phishing-code" style="margin:0;padding:12px 20px;background:#fff4c2;'
        'border-bottom:2px solid #c9a200;font-size:16px;font-weight:bold;">'
        '{label}: <span style="font-family:monospace;font-size:20px;">{code}</span></div>'
    ).format(label=BANNER_LABEL, code=code)


def _when(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


@lru_cache(maxsize=2)
def _environment(html: bool) -> Environment:
    environment = Environment(
        loader=PackageLoader("strongroom.notify", "templates"),
        undefined=StrictUndefined,
        autoescape=html,  # noqa: S701  (the text parts are not HTML)
        keep_trailing_newline=False,
        auto_reload=False,  # package files: no stat() of each template per render (issue #14)
    )
    environment.filters["when"] = _when
    return environment


def render(
    template_id: str, context: Mapping[str, object], *, anti_phishing_code: str | None
) -> RenderedEmail:
    """The subject, text and HTML of one email; ``anti_phishing_code`` None: no banner."""
    if anti_phishing_code is not None:
        invariant(
            CODE_PATTERN.fullmatch(anti_phishing_code) is not None,
            "anti-phishing code must be 1-6 letters or digits",
        )
    template = templates.get(template_id)
    subject = _subject(template.subject, context)
    text_body = _environment(False).get_template(template.text_file).render(context).strip()
    html_body = _environment(True).get_template(template.html_file).render(context).strip()
    email = RenderedEmail(
        template_id=template_id,
        subject=subject,
        text=_wrap_text(text_body, anti_phishing_code),
        html=_wrap_html(subject, html_body, anti_phishing_code),
    )
    _check_banner(email, anti_phishing_code)
    return email


def subject(template_id: str, context: Mapping[str, object]) -> str:
    """The subject of ``render``'s email alone (a deferred email's, stored when it is written)."""
    return _subject(templates.get(template_id).subject, context)


DATETIME_KEY = "$datetime"


def stored_context(context: Mapping[str, object], *, anti_phishing_code: str | None) -> str:
    """``render``'s arguments as JSON, for rendering the bodies later (``render_stored``): the
    values a template reads are strings, numbers, None and timezone-aware datetimes."""
    return json.dumps(
        {"context": context, "anti_phishing_code": anti_phishing_code},
        default=_encode,
        ensure_ascii=False,
        separators=(",", ":"),
    )


def render_stored(template_id: str, stored: str) -> RenderedEmail:
    """``render`` with the arguments ``stored_context`` kept: the same email as rendering it
    when it was written."""
    found = json.loads(stored, object_hook=_decode)
    return render(template_id, found["context"], anti_phishing_code=found["anti_phishing_code"])


def _encode(value: object) -> object:
    if isinstance(value, datetime):
        invariant(value.tzinfo is not None, "a stored datetime is timezone-aware")
        return {DATETIME_KEY: value.isoformat()}
    raise TypeError(f"an email context cannot store {type(value).__name__}")


def _decode(value: dict[str, object]) -> object:
    if value.keys() == {DATETIME_KEY}:
        return datetime.fromisoformat(str(value[DATETIME_KEY]))
    return value


@lru_cache(maxsize=256)
def _subject_template(source: str) -> Template:
    """A registered subject, compiled once (compiling costs milliseconds; rendering does not)."""
    return _environment(False).from_string(source)


_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_]\w*)\s*\}\}")
_PLAIN_SUBJECT = re.compile(r"(?:[^{}]|\{\{\s*[A-Za-z_]\w*\s*\}\})*")


@lru_cache(maxsize=256)
def _subject_parts(source: str) -> tuple[str, ...] | None:
    """A subject made only of text and ``{{ name }}`` placeholders, split: the text at even
    indexes, the names at odd ones; None for any other template (Jinja renders it). Such a
    subject is the text with each value's ``str()``, as Jinja writes it; joined here, it costs
    a tenth of a Jinja render, and the group commit renders two per transfer (issue #14)."""
    if _PLAIN_SUBJECT.fullmatch(source) is None:
        return None
    return tuple(_PLACEHOLDER.split(source))


def _render_subject(source: str, context: Mapping[str, object]) -> str:
    parts = _subject_parts(source)
    if parts is None or not all(name in context for name in parts[1::2]):
        return _subject_template(source).render(context)  # Jinja: StrictUndefined refuses
    return "".join(part if i % 2 == 0 else str(context[part]) for i, part in enumerate(parts))


def _subject(source: str, context: Mapping[str, object]) -> str:
    subject = _render_subject(source, context)
    subject = " ".join(subject.split())  # one line: no header injection through a name
    invariant(0 < len(subject) <= SUBJECT_MAX_CHARS, "a subject is 1-200 characters")
    return subject


def _wrap_text(body: str, code: str | None) -> str:
    top = f"{banner_text(code)}\n{'=' * len(banner_text(code))}\n\n" if code is not None else ""
    footer = (
        "Strongroom never asks for your password, your two-factor codes or your recovery "
        "codes by email or by phone."
    )
    return f"{top}{body}\n\n--\n{footer}\n"


def _wrap_html(subject: str, body: str, code: str | None) -> str:
    layout = _environment(True).get_template("_layout.html.j2")
    banner = banner_html(code) if code is not None else Markup("")
    # the body was rendered with autoescape on: it is markup already
    return layout.render(subject=subject, banner=banner, body=Markup(body))  # noqa: S704


def _check_banner(email: RenderedEmail, code: str | None) -> None:
    if code is None:
        invariant(BANNER_LABEL not in email.text, "no code set, yet a banner in the text part")
        return
    invariant(
        email.text.startswith(banner_text(code) + "\n"),
        "the text part must start with the anti-phishing code",
    )
    body_open = email.html.index(">", email.html.index("<body")) + 1
    invariant(
        email.html[body_open:].lstrip().startswith(str(banner_html(code))),
        "the HTML part must show the anti-phishing code first",
    )


def preview(code: str) -> tuple[str, str]:
    """How the banner looks in the text and the HTML part (the settings page's preview)."""
    invariant(CODE_PATTERN.fullmatch(code) is not None, "anti-phishing code must be 1-6 alnum")
    return banner_text(code), str(banner_html(code))
