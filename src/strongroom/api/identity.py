"""Identity endpoints (SPEC §13): sign-up and sign-in, password reset, the user's security
settings (anti-phishing code, 2FA, password, email, sessions, security events) and the
operators' audit search. Thin: the services decide; the request's unit of work
(``api.get_session``) commits, or on a refusal keeps only what the services marked as kept
(failure counts, locks, alert emails, audit events)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, Query, Request, Response

from strongroom.api import SessionDep, SettingsDep, UserDep, bearer_token, operator_with, throttle
from strongroom.identity import antiphishing, audit, reset, service, totp, two_factor
from strongroom.identity.audit import Origin
from strongroom.identity.models import AuditEvent, AuthToken, User
from strongroom.identity.schemas import (
    AntiPhishingCodeIn,
    AntiPhishingPreviewOut,
    AuditEventOut,
    AuditEventsOut,
    EmailChangeIn,
    LoginIn,
    LoginOut,
    MeOut,
    OtpIn,
    PasswordChangeIn,
    PasswordResetConfirmIn,
    PasswordResetIn,
    RecoveryCodesOut,
    RegisterIn,
    RegisterOut,
    RevokedOut,
    SecurityEventOut,
    SecurityEventsOut,
    SessionOut,
    SessionsOut,
    TwoFactorEnrolOut,
)
from strongroom.notify import render
from strongroom.settings import Settings

router = APIRouter(prefix="/v1", tags=["identity"])
LimitQuery = Annotated[int | None, Query(ge=1)]
NO_STORE = {"Cache-Control": "no-store"}


def origin_of(request: Request) -> Origin:
    return Origin(
        ip=request.client.host if request.client else None,
        user_agent=request.headers.get("user-agent"),
    )


def current_auth(
    session: SessionDep, token: Annotated[str | None, Depends(bearer_token)]
) -> tuple[User, AuthToken]:
    return service.authenticate_session(session=session, token=token)


AuthDep = Annotated[tuple[User, AuthToken], Depends(current_auth)]
LOGIN_REFUSALS: Final[dict[int | str, dict[str, Any]]] = {
    429: {
        "description": "`rate_limited` (`details.rule`, `details.retry_after_s`, `Retry-After`), "
        "`account_locked` (`details.locked_until`), `two_factor_blocked`"
    }
}
AuditReaderDep = Annotated[User, operator_with("audit")]


# --------------------------------------------------------------------------- sign-up, sign-in


@router.post("/auth/register", status_code=201, responses=throttle.THROTTLED)
def register(
    body: RegisterIn, request: Request, session: SessionDep, settings: SettingsDep
) -> RegisterOut:
    throttle.registration(request, session)  # before Argon2 (R-SEC-9)
    user = service.register(
        session=session,
        email=body.email,
        password=body.password,
        name=body.name,
        region=body.region,
        settings=settings.auth,
        origin=origin_of(request),
    )
    return RegisterOut(user_id=user.id)


@router.post("/auth/login", responses=LOGIN_REFUSALS)
def login(body: LoginIn, request: Request, session: SessionDep, settings: SettingsDep) -> LoginOut:
    origin = origin_of(request)
    counted = throttle.login(request, session, body.email)  # before Argon2 (R-SEC-9)
    if body.otp is not None:
        counted += throttle.two_factor(request, session, body.email)
    issued = service.login(
        session=session,
        email=body.email,
        password=body.password,
        otp=body.otp,
        settings=settings.auth,
        ip=origin.ip,
        user_agent=origin.user_agent,
    )
    throttle.give_back(request, session, counted)  # the limits count wrong guesses
    return LoginOut(token=issued.token, expires_at=issued.expires_at)


@router.post("/auth/logout", status_code=204)
def logout(auth: AuthDep, request: Request, session: SessionDep) -> Response:
    user, token = auth
    service.revoke_session(
        session=session, user=user, session_id=token.id, origin=origin_of(request)
    )
    return Response(status_code=204)


@router.post("/auth/password-reset", status_code=202, responses=throttle.THROTTLED)
def password_reset(
    body: PasswordResetIn, request: Request, session: SessionDep, settings: SettingsDep
) -> Response:
    """The same 202 whether or not an account has this email."""
    throttle.password_reset(request, session, body.email)
    reset.request_reset(
        session=session,
        email=body.email,
        settings=settings.auth,
        reset_url=_reset_url(settings),
        origin=origin_of(request),
    )
    return Response(status_code=202)


def _reset_url(settings: Settings) -> str:
    return settings.mail.public_url.rstrip("/") + "/reset-password"


@router.post("/auth/password-reset/confirm", status_code=204, responses=throttle.THROTTLED)
def password_reset_confirm(
    body: PasswordResetConfirmIn, request: Request, session: SessionDep, settings: SettingsDep
) -> Response:
    throttle.password_reset(request, session, None)  # before Argon2 (R-SEC-9)
    reset.confirm_reset(
        session=session,
        token=body.token,
        new_password=body.new_password,
        otp=body.otp,
        settings=settings.auth,
        origin=origin_of(request),
    )
    return Response(status_code=204)


# --------------------------------------------------------------------------- me


@router.get("/me")
def me(user: UserDep) -> MeOut:
    return MeOut(
        user_id=user.id,
        email=user.email,
        name=user.name,
        region=user.region,
        kyc_tier=user.kyc_tier,
        two_factor=two_factor.is_enabled(user),
        anti_phishing_code_set=user.anti_phishing_code is not None,
        operator_role=user.operator_role,
        withdrawals_frozen_until=user.withdrawals_frozen_until,
    )


@router.put("/me/anti-phishing-code", status_code=204)
def set_anti_phishing_code(
    body: AntiPhishingCodeIn,
    user: UserDep,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
) -> Response:
    service.set_anti_phishing_code(
        session=session,
        user=user,
        code=body.code,
        settings=settings.auth,
        origin=origin_of(request),
    )
    return Response(status_code=204)


@router.delete("/me/anti-phishing-code", status_code=204)
def remove_anti_phishing_code(
    user: UserDep, request: Request, session: SessionDep, settings: SettingsDep
) -> Response:
    service.remove_anti_phishing_code(
        session=session, user=user, settings=settings.auth, origin=origin_of(request)
    )
    return Response(status_code=204)


@router.get("/me/anti-phishing-code/preview")
def preview_anti_phishing_code(
    user: UserDep, code: Annotated[str | None, Query(max_length=64)] = None
) -> AntiPhishingPreviewOut:
    """How the banner will look at the top of every email: the current code, or ``code``."""
    shown = code if code is not None else user.anti_phishing_code
    if shown is None:
        return AntiPhishingPreviewOut(code_set=False, text=None, html=None)
    antiphishing.check_format(shown)
    text, html = render.preview(shown)
    return AntiPhishingPreviewOut(
        code_set=user.anti_phishing_code is not None, text=text, html=html
    )


@router.post("/me/password", status_code=204)
def change_password(
    body: PasswordChangeIn,
    auth: AuthDep,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
) -> Response:
    user, token = auth
    service.change_password(
        session=session,
        user=user,
        current_password=body.current_password,
        new_password=body.new_password,
        otp=body.otp,
        settings=settings.auth,
        keep_session_id=token.id,
        origin=origin_of(request),
    )
    return Response(status_code=204)


@router.put("/me/email", status_code=204)
def change_email(
    body: EmailChangeIn, user: UserDep, request: Request, session: SessionDep, settings: SettingsDep
) -> Response:
    service.change_email(
        session=session,
        user=user,
        new_email=body.email,
        password=body.password,
        otp=body.otp,
        settings=settings.auth,
        origin=origin_of(request),
    )
    return Response(status_code=204)


# --------------------------------------------------------------------------- 2FA


@router.post("/me/2fa")
def begin_two_factor(
    user: UserDep, session: SessionDep, settings: SettingsDep, response: Response
) -> TwoFactorEnrolOut:
    enrolment = service.begin_two_factor(session=session, user=user, settings=settings.auth)
    response.headers.update(NO_STORE)
    return TwoFactorEnrolOut(secret=enrolment.secret, otpauth_uri=enrolment.otpauth_uri)


@router.get(
    "/me/2fa/qr.svg", response_class=Response, responses={200: {"content": {"image/svg+xml": {}}}}
)
def two_factor_qr(user: UserDep, session: SessionDep, settings: SettingsDep) -> Response:
    """The enrolment in progress as a QR code to scan with an authenticator app."""
    uri = two_factor.pending_uri(session=session, user=user, settings=settings.auth)
    return Response(content=totp.qr_svg(uri), media_type="image/svg+xml", headers=NO_STORE)


@router.post("/me/2fa/confirm", responses=throttle.THROTTLED)
def confirm_two_factor(
    body: OtpIn,
    auth: AuthDep,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    response: Response,
) -> RecoveryCodesOut:
    user, token = auth
    throttle.two_factor(request, session, user.email)
    codes = service.confirm_two_factor(
        session=session,
        user=user,
        otp=body.otp,
        settings=settings.auth,
        keep_session_id=token.id,
        origin=origin_of(request),
    )
    response.headers.update(NO_STORE)
    return RecoveryCodesOut(recovery_codes=codes)


@router.post("/me/2fa/disable", status_code=204, responses=throttle.THROTTLED)
def disable_two_factor(
    body: OtpIn, user: UserDep, request: Request, session: SessionDep, settings: SettingsDep
) -> Response:
    """Turn 2FA off with a current code or a recovery code."""
    throttle.two_factor(request, session, user.email)
    service.disable_two_factor(
        session=session,
        user=user,
        otp=body.otp,
        settings=settings.auth,
        origin=origin_of(request),
    )
    return Response(status_code=204)


# --------------------------------------------------------------------------- sessions


@router.get("/me/sessions")
def sessions(auth: AuthDep, session: SessionDep, settings: SettingsDep) -> SessionsOut:
    user, token = auth
    rows = service.active_sessions(session=session, user=user, settings=settings.auth)
    return SessionsOut(
        items=[
            SessionOut(
                id=row.id,
                created_at=row.created_at,
                expires_at=row.expires_at,
                ip=row.ip,
                user_agent=row.user_agent,
                current=row.id == token.id,
            )
            for row in rows
        ]
    )


@router.delete("/me/sessions/{session_id}", status_code=204)
def revoke_session(
    session_id: str, user: UserDep, request: Request, session: SessionDep
) -> Response:
    service.revoke_session(
        session=session, user=user, session_id=session_id, origin=origin_of(request)
    )
    return Response(status_code=204)


@router.post("/me/sessions/revoke-others")
def revoke_other_sessions(auth: AuthDep, request: Request, session: SessionDep) -> RevokedOut:
    user, token = auth
    revoked = service.revoke_other_sessions(
        session=session, user=user, keep_session_id=token.id, origin=origin_of(request)
    )
    return RevokedOut(revoked=revoked)


# --------------------------------------------------------------------------- audit


@router.get("/me/security-events")
def security_events(
    user: UserDep,
    session: SessionDep,
    settings: SettingsDep,
    cursor: str | None = None,
    limit: LimitQuery = None,
) -> SecurityEventsOut:
    size = min(limit or settings.auth.audit_page_size_default, settings.auth.audit_page_size_max)
    page = audit.security_events(session=session, user_id=user.id, limit=size, cursor=cursor)
    return SecurityEventsOut(
        items=[
            SecurityEventOut(
                id=e.id,
                action=e.action,
                occurred_at=e.occurred_at,
                ip=e.ip,
                user_agent=e.user_agent,
                details=audit.details(e),
            )
            for e in page.items
        ],
        next_cursor=page.next_cursor,
    )


@router.get("/admin/audit", tags=["operator"])
def audit_search(
    operator: AuditReaderDep,
    session: SessionDep,
    settings: SettingsDep,
    actor: Annotated[str | None, Query(max_length=254)] = None,
    action: Annotated[str | None, Query(max_length=80)] = None,
    since: datetime | None = None,
    subject: Annotated[str | None, Query(max_length=32)] = None,
    category: Annotated[str | None, Query(pattern="^(security|operator)$")] = None,
    cursor: str | None = None,
    limit: LimitQuery = None,
) -> AuditEventsOut:
    """Search the audit log (admins): by actor (id or email), action (or its dotted prefix),
    time, subject user and category; newest first."""
    size = min(limit or settings.auth.audit_page_size_default, settings.auth.audit_page_size_max)
    if since is not None and since.tzinfo is None:
        since = since.replace(tzinfo=UTC)  # a time without a zone is taken as UTC
    page = audit.search(
        session=session,
        limit=size,
        cursor=cursor,
        actor=actor,
        action=action,
        since=since,
        subject_user_id=subject,
        category=category,
    )
    return AuditEventsOut(items=[_audit_out(e) for e in page.items], next_cursor=page.next_cursor)


def _audit_out(event: AuditEvent) -> AuditEventOut:
    return AuditEventOut(
        id=event.id,
        occurred_at=event.occurred_at,
        category=event.category,
        action=event.action,
        actor_id=event.actor_id,
        actor_role=event.actor_role,
        subject_user_id=event.subject_user_id,
        ip=event.ip,
        user_agent=event.user_agent,
        details=audit.details(event),
    )
