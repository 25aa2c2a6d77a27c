"""The demo's inbox: the emails the outbox worker actually delivered over SMTP, read back from
the Maildir the demo's SMTP sink writes (``strongroom.demo.MailSink``), with the standard
library's ``mailbox``.

Only in the demo: the screen exists when the settings' ``env`` is ``demo`` and the app was given
a Maildir (``app.state.demo_inbox``, set by ``strongroom demo``). A real installation delivers
to real mailboxes and has nothing to show here. Unlike the outbox screen, this one shows the
text of each email, one-time secrets included (a password-reset link): it is the demo's only
way to read them, and the demo holds no one's real account.
"""

from __future__ import annotations

import email.policy
import mailbox
import re
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Final

from fastapi import Request

from strongroom.errors import invariant
from strongroom.notify.render import BANNER_LABEL
from strongroom.settings import Settings

STATE_KEY: Final = "demo_inbox"
"""``app.state.demo_inbox``: the demo's Maildir (a ``Path``)."""
PAGE_SIZE: Final = 20
PAGES_MAX: Final = 50
TEXT_MAX_CHARS: Final = 20_000
_KEY_TIME = re.compile(r"^(\d+)\.M(\d+)")
_PARSER: Final = BytesParser(policy=email.policy.default)


@dataclass(frozen=True, slots=True)
class Delivered:
    """One delivered email, as the recipient's mail program would show it."""

    subject: str
    to: str
    sent_at: datetime | None
    template_id: str
    anti_phishing_code: str | None
    text: str


@dataclass(frozen=True, slots=True)
class InboxPage:
    items: list[Delivered]
    total: int
    page: int
    pages: int


def directory(request: Request) -> Path | None:
    """The Maildir of the demo's inbox, or None when this app is not the demo with a sink."""
    settings: Settings = request.app.state.settings
    found = getattr(request.app.state, STATE_KEY, None)
    if not settings.demo_inbox_enabled() or not isinstance(found, Path):
        return None
    return found


def _arrival(key: str) -> tuple[int, int, str]:
    """Maildir keys start with the delivery time (``<seconds>.M<microseconds>...``)."""
    found = _KEY_TIME.match(key)
    if found is None:
        return (0, 0, key)
    return (int(found.group(1)), int(found.group(2)), key)


def read(maildir: Path, *, page: int) -> InboxPage:
    """Newest first, ``PAGE_SIZE`` a page; ``page`` counts from 1 (clamped to the last)."""
    invariant(page >= 1, "pages count from 1")
    box = mailbox.Maildir(maildir, create=False) if maildir.is_dir() else None
    keys = sorted(box.keys(), key=_arrival, reverse=True) if box is not None else []
    pages = max(1, min(PAGES_MAX, -(-len(keys) // PAGE_SIZE)))
    page = min(page, pages)
    chosen = keys[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]
    items = [_delivered(box.get_bytes(key)) for key in chosen] if box is not None else []
    return InboxPage(items=items, total=len(keys), page=page, pages=pages)


def _delivered(raw: bytes) -> Delivered:
    message = _PARSER.parsebytes(raw)
    invariant(isinstance(message, EmailMessage), "the default policy parses to EmailMessage")
    body = message.get_body(preferencelist=("plain",))
    text = body.get_content() if isinstance(body, EmailMessage) else ""
    code, text = _banner(str(text)[:TEXT_MAX_CHARS])
    return Delivered(
        subject=str(message.get("Subject", "")),
        to=str(message.get("To", "")),
        sent_at=_date(message.get("Date")),
        template_id=str(message.get("X-Strongroom-Template", "")),
        anti_phishing_code=code,
        text=text,
    )


def _banner(text: str) -> tuple[str | None, str]:
    """The anti-phishing code of the text part's first line (and the rest of the text)."""
    prefix = f"{BANNER_LABEL}: "
    if not text.startswith(prefix):
        return None, text.strip()
    first, _, rest = text.partition("\n")
    if rest.startswith("="):  # the line under the banner
        rest = rest.partition("\n")[2]
    return first[len(prefix) :].strip(), rest.strip()


def _date(value: object) -> datetime | None:
    if value is None:
        return None
    try:
        moment = parsedate_to_datetime(str(value))
    except (TypeError, ValueError):
        return None
    return moment if moment.tzinfo is not None else None
