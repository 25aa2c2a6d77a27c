"""A user's data export and the erasure of their account (issue #11 item 7).

**Export** (``export``): everything held about the user as one ZIP, built synchronously:
``data.json`` (profile, sessions without their token hashes, security and audit events about
them, KYC submissions with their fields, bank accounts with their full numbers, payment-code
devices without secrets, virtual cards by last4, the ledger history of their accounts, FX
quotes and conversions, top-up records, the emails sent to them: subject and times) and their
KYC documents decrypted under ``kyc/``. Bounded: more than ``privacy.export_max_rows`` rows in
one section, or a ZIP over ``privacy.export_max_bytes``, is ``export_too_large`` (413) rather
than a request that runs for minutes. It needs the step-up (R-SEC-8: it holds documents), is
audited (``privacy.data_exported``) and emailed to the user (``privacy.data_exported``).

**Erasure** (``erase``), the policy:

- Refused while money is held: any of the user's ledger accounts with a non-zero total or
  pending amount, or a top-up still waiting for its connector, is ``balance_not_zero`` (409,
  ``details.assets``, ``details.pending_topups``): the user withdraws or spends it first. An
  erasure never moves money, so the ledger stays balanced by construction. Operators are
  refused (``operator_account``): an operator account is closed by an admin, not erased.
- The account is closed: every session revoked (its IP and user agent forgotten), pending
  sign-ins, 2FA factor, recovery codes, reset and verification tokens and the email's sign-in
  throttle deleted, API keys revoked, the password hash replaced by one no password matches,
  payment-code devices revoked, virtual cards deleted. Sign-in is impossible (the email no
  longer exists and no password matches).
- Personal fields are replaced by a pseudonym: email -> ``erased-<hash>@invalid`` (the hash is
  of the user id, not of the email, so it reveals nothing and the address can register again),
  name -> ``Erased user``; phone, legal name, nationality, anti-phishing code -> NULL; KYC
  submissions' ID fields -> NULL (a pending one is closed as rejected, ``account erased``);
  KYC document rows deleted and their sealed files deleted from the document store once the
  erasure commits; bank accounts: holder and number replaced (``removed``), the bank code kept;
  devices' names replaced; outbox emails: address pseudonymised, subject and bodies replaced,
  unsent ones failed (never delivered to a pseudonym).
- Kept, linked to the (random, now pseudonymous) user id for ``privacy.retention_days``
  (default 7 years): ledger accounts, transfers and entries, FX quotes and conversions, top-up
  records, and the rows above in their pseudonymised form. After the retention period
  ``purge`` deletes the remaining per-user records (FX quotes and conversions, top-ups, KYC
  submissions, bank accounts, outbox emails) and stamps ``purged_at``.
- Kept for ever, pseudonymised: the ledger journal (transfers, entries, lock lots) and the
  audit log. Both are append-only by database trigger (R-LEDGER, R-SEC-7) and the journal is
  what ``ledger check`` and the proof of reserves recompute every balance from: deleting rows
  would unbalance other users' accounts. They hold account ids, amounts and codes, linked to a
  user id that no longer leads to a person. Known limits: a transfer's free-text ``note``
  written by the user, and the IP addresses in the security events written before the
  erasure, stay as written (append-only).
- Audited as ``privacy.account_erased`` with no personal data: no IP, no user agent, no email;
  ``details`` holds only the retention date.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Final

from sqlalchemy import delete, event, func, or_, select, update
from sqlalchemy.orm import Session

from strongroom.banking.models import BankAccount
from strongroom.db import utcnow
from strongroom.errors import Conflict, DomainError, Forbidden
from strongroom.funding.models import Purchase, Topup
from strongroom.fx.models import FxConversion, FxQuote
from strongroom.identity import audit
from strongroom.identity.api_keys import ApiKey
from strongroom.identity.audit import NOWHERE, Origin
from strongroom.identity.models import (
    AuditEvent,
    AuthToken,
    EmailVerification,
    LoginThrottle,
    PasswordReset,
    PendingSignIn,
    RecoveryCode,
    StepUpFailures,
    TotpFactor,
    User,
)
from strongroom.identity.step_up import StepUp
from strongroom.kyc import service as kyc
from strongroom.kyc.models import Document, Submission
from strongroom.kyc.store import DocumentStore
from strongroom.ledger import service as ledger
from strongroom.ledger.models import Account, Entry, Transfer
from strongroom.notify import outbox
from strongroom.notify.models import FAILED, PENDING, OutboxEmail
from strongroom.paycodes.models import Device
from strongroom.settings import PrivacySettings
from strongroom.tokens import service as tokens
from strongroom.tokens.models import VirtualCard

ERASED_NAME: Final = "Erased user"
ERASED_TEXT: Final = "[erased]"
# not an Argon2 hash: no password ever matches it
UNUSABLE_PASSWORD_HASH: Final = "!erased"  # noqa: S105
FORMAT_VERSION: Final = 1
DELETE_FILES: Final = "privacy.delete_files"


class ExportTooLarge(DomainError):
    code = "export_too_large"
    status = 413


class BalanceNotZero(Conflict):
    code = "balance_not_zero"


@dataclass(frozen=True, slots=True)
class Export:
    filename: str
    content: bytes


@dataclass(frozen=True, slots=True)
class Erased:
    user_id: str
    erased_at: datetime
    retained_until: datetime


def pseudonym_email(user_id: str) -> str:
    """``erased-<hash>@invalid`` (RFC 2606: ``.invalid`` never delivers): of the id only."""
    digest = hashlib.sha256(f"strongroom-erased:{user_id}".encode()).hexdigest()[:24]
    return f"erased-{digest}@invalid"


# --------------------------------------------------------------------------- export


def export(
    *,
    session: Session,
    user: User,
    proof: StepUp,
    vault: kyc.DocumentVault,
    settings: PrivacySettings,
    origin: Origin = NOWHERE,
    now: datetime | None = None,
) -> Export:
    """Everything held about ``user``: ``data.json`` and the KYC documents decrypted, as one
    ZIP; audited and emailed (in the unit of work: only when the export is served)."""
    proof.require(user)
    now = now or utcnow()
    rows = settings.export_max_rows
    data: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "exported_at": now,
        "profile": _profile(user),
        "sessions": [
            {
                "id": t.id,
                "created_at": t.created_at,
                "expires_at": t.expires_at,
                "revoked_at": t.revoked_at,
                "ip": t.ip,
                "user_agent": t.user_agent,
            }
            for t in _bounded(
                session,
                select(AuthToken)
                .where(AuthToken.user_id == user.id)
                .order_by(AuthToken.created_at),
                rows,
                "sessions",
            )
        ],
        "audit_events": [
            {
                "id": e.id,
                "occurred_at": e.occurred_at,
                "category": e.category,
                "action": e.action,
                "by_operator_role": e.actor_role if e.actor_id != user.id else None,
                "ip": e.ip,
                "user_agent": e.user_agent,
                "details": audit.details(e),
            }
            for e in _bounded(
                session,
                select(AuditEvent)
                .where(AuditEvent.subject_user_id == user.id)
                .order_by(AuditEvent.id),
                rows,
                "audit_events",
            )
        ],
        "bank_accounts": [
            {
                "id": b.id,
                "holder_name": b.holder_name,
                "bank_code": b.bank_code,
                "account_number": b.account_number,
                "created_at": b.created_at,
                "removed_at": b.removed_at,
            }
            for b in _bounded(
                session,
                select(BankAccount).where(BankAccount.user_id == user.id).order_by(BankAccount.id),
                rows,
                "bank_accounts",
            )
        ],
        "payment_code_devices": [
            {
                "id": d.id,
                "name": d.name,
                "server_held": d.server_held,
                "created_at": d.created_at,
                "last_used_at": d.last_used_at,
                "revoked_at": d.revoked_at,
            }
            for d in _bounded(
                session,
                select(Device).where(Device.user_id == user.id).order_by(Device.created_at),
                rows,
                "payment_code_devices",
            )
        ],
        "virtual_cards": [
            {
                "id": c.id,
                "last4": c.last4,
                "merchant_id": c.merchant_id,
                "status": c.status,
                "created_at": c.created_at,
                "status_changed_at": c.status_changed_at,
            }
            for c in _bounded(
                session,
                select(VirtualCard)
                .where(VirtualCard.user_id == user.id)
                .order_by(VirtualCard.created_at),
                rows,
                "virtual_cards",
            )
        ],
        "accounts": [],
        "transactions": [],
        "fx_quotes": [
            {
                "id": q.id,
                "from_asset": q.from_asset,
                "to_asset": q.to_asset,
                "from_minor": q.from_minor,
                "to_minor": q.to_minor,
                "rate": q.rate,
                "created_at": q.created_at,
                "expires_at": q.expires_at,
            }
            for q in _bounded(
                session,
                select(FxQuote).where(FxQuote.user_id == user.id).order_by(FxQuote.created_at),
                rows,
                "fx_quotes",
            )
        ],
        "fx_conversions": [
            {
                "id": c.id,
                "quote_id": c.quote_id,
                "from_transfer_id": c.from_transfer_id,
                "to_transfer_id": c.to_transfer_id,
                "locked_carried_minor": c.locked_carried_minor,
                "created_at": c.created_at,
            }
            for c in _bounded(
                session,
                select(FxConversion)
                .where(FxConversion.user_id == user.id)
                .order_by(FxConversion.created_at),
                rows,
                "fx_conversions",
            )
        ],
        "topups": [
            {
                "id": t.id,
                "channel": t.channel,
                "asset": t.asset,
                "amount_minor": t.amount_minor,
                "received_minor": t.received_minor,
                "status": t.status,
                "external_reference": t.external_reference,
                "transfer_id": t.transfer_id,
                "failure_reason": t.failure_reason,
                "created_at": t.created_at,
                "updated_at": t.updated_at,
            }
            for t in _bounded(
                session,
                select(Topup).where(Topup.user_id == user.id).order_by(Topup.created_at),
                rows,
                "topups",
            )
        ],
        "purchases": [
            {
                "id": p.id,
                "topup_id": p.topup_id,
                "quote_id": p.quote_id,
                "asset": p.asset,
                "amount_minor": p.amount_minor,
                "pay_asset": p.pay_asset,
                "pay_minor": p.pay_minor,
                "rate": p.rate,
                "held_until": p.held_until,
                "outcome": p.outcome,
                "credit_transfer_id": p.credit_transfer_id,
                "unlocks_at": p.unlocks_at,
                "created_at": p.created_at,
            }
            for p in _bounded(
                session,
                select(Purchase).where(Purchase.user_id == user.id).order_by(Purchase.created_at),
                rows,
                "purchases",
            )
        ],
        "emails": [
            {
                "template_id": m.template_id,
                "to_address": m.to_address,
                "subject": m.subject,
                "created_at": m.created_at,
                "sent_at": m.sent_at,
                "status": m.status,
            }
            for m in _bounded(
                session,
                select(OutboxEmail).where(OutboxEmail.user_id == user.id).order_by(OutboxEmail.id),
                rows,
                "emails",
            )
        ],
        "kyc_submissions": [],
    }
    accounts = ledger.accounts_of(session=session, owner_type="user", owner_id=user.id)
    if accounts:
        for account, balance in zip(
            accounts,
            ledger.balances(session=session, account_ids=[a.id for a in accounts], now=now),
            strict=True,
        ):
            data["accounts"].append(
                {
                    "id": account.id,
                    "kind": account.kind,
                    "asset": account.asset,
                    "created_at": account.created_at,
                    "total_minor": balance.total_minor,
                    "pending_minor": balance.pending_minor,
                    "locked_minor": balance.locked_minor,
                }
            )
        data["transactions"] = _transactions(session, [a.id for a in accounts], rows)
    files: list[tuple[str, bytes]] = []
    for submission in _bounded(
        session,
        select(Submission).where(Submission.user_id == user.id).order_by(Submission.id),
        rows,
        "kyc_submissions",
    ):
        documents = []
        for document in kyc.documents_of(session=session, submission=submission):
            path = f"kyc/{submission.id}/{document.id}-{document.kind}{_suffix(document)}"
            files.append((path, kyc.read_document(document=document, vault=vault)))
            documents.append(
                {
                    "id": document.id,
                    "kind": document.kind,
                    "content_type": document.content_type,
                    "size_bytes": document.size_bytes,
                    "created_at": document.created_at,
                    "file": path,
                }
            )
        data["kyc_submissions"].append(
            {
                "id": submission.id,
                "level": submission.level,
                "status": submission.status,
                "created_at": submission.created_at,
                "document_country": submission.document_country,
                "document_type": submission.document_type,
                "legal_name": submission.legal_name,
                "document_number": submission.document_number,
                "date_of_birth": submission.date_of_birth,
                "residence_country": submission.residence_country,
                "based_on_id": submission.based_on_id,
                "reason": submission.reason,
                "reviewed_at": submission.reviewed_at,
                "documents": documents,
            }
        )
    content = _zip(data, files, settings.export_max_bytes)
    audit.record(
        session=session,
        action="privacy.data_exported",
        subject_user_id=user.id,
        actor=user,
        origin=origin,
        now=now,
        details={"bytes": len(content), "documents": len(files)},
    )
    outbox.send_to_user(
        session=session,
        user=user,
        template_id="privacy.data_exported",
        context={"at": now, "ip": origin.ip, "documents": len(files)},
        now=now,
    )
    return Export(filename=f"strongroom-data-{now:%Y%m%d}.zip", content=content)


def _profile(user: User) -> dict[str, Any]:
    return {
        "user_id": user.id,
        "email": user.email,
        "email_verified_at": user.email_verified_at,
        "name": user.name,
        "region": user.region,
        "phone": user.phone,
        "legal_name": user.legal_name,
        "nationality": user.nationality,
        "kyc_tier": user.kyc_tier,
        "anti_phishing_code": user.anti_phishing_code,
        "two_factor_enabled_at": user.two_factor_enabled_at,
        "withdrawals_frozen_until": user.withdrawals_frozen_until,
        "created_at": user.created_at,
    }


def _bounded(session: Session, query: Any, limit: int, section: str) -> list[Any]:
    found = list(session.scalars(query.limit(limit + 1)))
    if len(found) > limit:
        raise ExportTooLarge(
            f"too much to export at once ({section}): contact support for a full export",
            section=section,
            rows_max=limit,
        )
    return found


def _transactions(session: Session, account_ids: list[int], limit: int) -> list[dict[str, Any]]:
    rows = session.execute(
        select(Entry, Transfer)
        .join(Transfer, Transfer.id == Entry.transfer_id)
        .where(Entry.account_id.in_(account_ids))
        .order_by(Entry.id)
        .limit(limit + 1)
    ).all()
    if len(rows) > limit:
        raise ExportTooLarge(
            "too much to export at once (transactions): contact support for a full export",
            section="transactions",
            rows_max=limit,
        )
    return [
        {
            "entry_id": entry.id,
            "transfer_id": transfer.id,
            "account_id": entry.account_id,
            "asset": entry.asset,
            "side": entry.side,
            "posted_minor": entry.posted_minor,
            "pending_minor": entry.pending_minor,
            "balance_after_minor": entry.balance_after,
            "kind": transfer.kind,
            "code": transfer.code,
            "amount_minor": transfer.amount_minor,
            "note": transfer.note,
            "created_at": entry.created_at,
        }
        for entry, transfer in rows
    ]


_SUFFIXES: Final = {"image/jpeg": ".jpg", "image/png": ".png", "application/pdf": ".pdf"}


def _suffix(document: Document) -> str:
    return _SUFFIXES.get(document.content_type, ".bin")


def _json_default(value: object) -> object:
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise TypeError(f"not JSON: {type(value).__name__}")


def _zip(data: Mapping[str, Any], files: Iterable[tuple[str, bytes]], max_bytes: int) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(
            "data.json",
            json.dumps(data, default=_json_default, indent=2, ensure_ascii=False),
        )
        for path, content in files:
            archive.writestr(path, content)
            if buffer.tell() > max_bytes:
                break
    if buffer.tell() > max_bytes:
        raise ExportTooLarge(
            "too much to export at once: contact support for a full export",
            section="documents",
            bytes_max=max_bytes,
        )
    return buffer.getvalue()


# --------------------------------------------------------------------------- erasure


def erase(
    *,
    session: Session,
    user: User,
    proof: StepUp,
    store: DocumentStore,
    settings: PrivacySettings,
    now: datetime | None = None,
) -> Erased:
    """Close ``user``'s account and replace their personal fields by a pseudonym (the policy
    is in this module's docstring). The KYC files are deleted once the erasure commits."""
    proof.require(user)
    now = now or utcnow()
    if user.operator_role is not None:
        raise Forbidden(
            "an operator account is closed by an admin, not erased", code="operator_account"
        )
    _refuse_money_held(session, user)
    old_email = user.email
    # the account: closed
    tokens_of_user = select(AuthToken.id).where(AuthToken.user_id == user.id)
    session.execute(delete(StepUpFailures).where(StepUpFailures.session_id.in_(tokens_of_user)))
    session.execute(
        update(AuthToken)
        .where(AuthToken.user_id == user.id)
        .values(revoked_at=func.coalesce(AuthToken.revoked_at, now), ip=None, user_agent=None)
    )
    for table in (PendingSignIn, TotpFactor, RecoveryCode, EmailVerification):
        session.execute(delete(table).where(table.user_id == user.id))
    session.execute(
        delete(PasswordReset).where(
            or_(PasswordReset.user_id == user.id, PasswordReset.email == old_email)
        )
    )
    session.execute(delete(LoginThrottle).where(LoginThrottle.email == old_email))
    session.execute(
        update(ApiKey)
        .where(ApiKey.owner_type == "user", ApiKey.owner_id == user.id, ApiKey.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    # the person: a pseudonym
    user.email = pseudonym_email(user.id)
    user.name = ERASED_NAME
    user.password_hash = UNUSABLE_PASSWORD_HASH
    user.phone = None
    user.legal_name = None
    user.nationality = None
    user.anti_phishing_code = None
    user.two_factor_enabled_at = None
    user.erased_at = now
    session.execute(
        update(Submission)
        .where(Submission.user_id == user.id, Submission.status == "pending")
        .values(status="rejected", reason="account erased", reviewed_at=now)
    )
    session.execute(
        update(Submission)
        .where(Submission.user_id == user.id)
        .values(
            document_country=None,
            document_type=None,
            legal_name=None,
            document_number=None,
            date_of_birth=None,
            residence_country=None,
        )
    )
    submissions = select(Submission.id).where(Submission.user_id == user.id)
    keys = list(
        session.scalars(select(Document.storage_key).where(Document.submission_id.in_(submissions)))
    )
    session.execute(delete(Document).where(Document.submission_id.in_(submissions)))
    _delete_files_on_commit(session, store, keys)
    session.execute(
        update(BankAccount)
        .where(BankAccount.user_id == user.id)
        .values(
            holder_name=ERASED_TEXT,
            account_number="removed",
            removed_at=func.coalesce(BankAccount.removed_at, now),
        )
    )
    session.execute(
        update(Device)
        .where(Device.user_id == user.id)
        .values(name=ERASED_TEXT, revoked_at=func.coalesce(Device.revoked_at, now))
    )
    session.execute(
        update(VirtualCard)
        .where(VirtualCard.user_id == user.id, VirtualCard.status != tokens.DELETED)
        .values(status=tokens.DELETED, status_changed_at=now)
    )
    session.execute(
        update(OutboxEmail)
        .where(OutboxEmail.user_id == user.id, OutboxEmail.status == PENDING)
        .values(status=FAILED, last_error="account erased", claim_token=None)
    )
    session.execute(
        update(OutboxEmail)
        .where(OutboxEmail.user_id == user.id)
        .values(
            to_address=user.email,
            subject=ERASED_TEXT,
            body_text=ERASED_TEXT,
            body_html="",
            context=None,
        )
    )
    retained_until = now + timedelta(days=settings.retention_days)
    audit.record(
        session=session,
        action="privacy.account_erased",
        subject_user_id=user.id,
        now=now,
        details={"retained_until": retained_until.date().isoformat()},
    )
    session.flush()
    return Erased(user_id=user.id, erased_at=now, retained_until=retained_until)


def _refuse_money_held(session: Session, user: User) -> None:
    """Any of the user's ledger accounts holding money, reserving it for a pending transfer
    out or about to receive a pending one in, or a top-up still waiting: ``balance_not_zero``.
    The accounts are locked (as a transfer locks them) until the erasure commits."""
    accounts = list(
        session.scalars(
            select(Account)
            .where(Account.owner_type == "user", Account.owner_id == user.id)
            .order_by(Account.id)
            .with_for_update()
        )
    )
    held = sorted(
        {
            a.asset
            for a in accounts
            if a.credits_posted != a.debits_posted or a.debits_pending or a.credits_pending
        }
    )
    waiting = (
        session.scalar(
            select(func.count())
            .select_from(Topup)
            .where(Topup.user_id == user.id, Topup.status == "requested")
        )
        or 0
    )
    if held or waiting:
        raise BalanceNotZero(
            "money is still held on this account: withdraw or spend it (and let waiting "
            "top-ups finish) before closing it",
            assets=held,
            pending_topups=waiting,
        )


def _delete_files_on_commit(session: Session, store: DocumentStore, keys: list[str]) -> None:
    """The sealed files go once the rows' deletion is committed (a refused or failed erasure
    keeps both); a file that fails to delete is left to the store's own cleanup."""
    if not keys:
        return
    pending: list[tuple[DocumentStore, str]] | None = session.info.get(DELETE_FILES)
    if pending is None:
        pending = session.info[DELETE_FILES] = []

        def committed(done: Session) -> None:
            for each_store, key in done.info.pop(DELETE_FILES, []):
                each_store.delete(key)

        def rolled_back(rolled: Session) -> None:
            rolled.info.pop(DELETE_FILES, None)

        event.listen(session, "after_commit", committed, once=True)
        event.listen(session, "after_rollback", rolled_back, once=True)
    pending.extend((store, key) for key in keys)


# --------------------------------------------------------------------------- purge


def purge(
    *, session: Session, settings: PrivacySettings, now: datetime | None = None, batch: int = 100
) -> list[str]:
    """After the retention period, delete an erased user's remaining per-user records (FX
    conversions and quotes, purchases, top-ups, KYC submissions, bank accounts, outbox emails)
    and stamp ``purged_at``; the ledger journal and the audit log stay, pseudonymised. Returns
    the ids purged (at most ``batch``: run it again until it returns none)."""
    now = now or utcnow()
    cutoff = now - timedelta(days=settings.retention_days)
    due = list(
        session.scalars(
            select(User)
            .where(User.erased_at.is_not(None), User.erased_at <= cutoff, User.purged_at.is_(None))
            .order_by(User.erased_at)
            .limit(batch)
            .with_for_update(skip_locked=True)
        )
    )
    steps: list[Callable[[list[str]], Any]] = [
        lambda ids: delete(Purchase).where(Purchase.user_id.in_(ids)),  # names quote, top-up
        lambda ids: delete(FxConversion).where(FxConversion.user_id.in_(ids)),
        lambda ids: delete(FxQuote).where(FxQuote.user_id.in_(ids)),
        lambda ids: delete(Topup).where(Topup.user_id.in_(ids)),
        lambda ids: (
            update(Submission)
            .where(Submission.based_on_id.is_not(None), Submission.user_id.in_(ids))
            .values(based_on_id=None)
        ),
        lambda ids: delete(Submission).where(Submission.user_id.in_(ids)),
        lambda ids: delete(BankAccount).where(BankAccount.user_id.in_(ids)),
        lambda ids: delete(OutboxEmail).where(OutboxEmail.user_id.in_(ids)),
    ]
    ids = [u.id for u in due]
    if ids:
        for step in steps:
            session.execute(step(ids))
        for user in due:
            user.purged_at = now
        audit.record(
            session=session,
            category=audit.OPERATOR,
            action="privacy.records_purged",
            now=now,
            details={"users": len(ids)},
        )
        session.flush()
    return ids
