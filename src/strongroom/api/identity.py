"""Identity endpoints (SPEC §13): sign-up and sign-in, password reset, the user's security
settings (anti-phishing code, 2FA, password, email, sessions, security events) and the
operators' audit search. Thin: the services decide; the request's unit of work
(``api.get_session``) commits, or on a refusal keeps only what the services marked as kept
(failure counts, locks, alert emails, audit events)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, Query, Request, Response
from sqlalchemy.orm import Session

from strongroom.api import (
    SessionDep,
    SettingsDep,
    UserDep,
    bearer_token,
    operator_with,
    origin_of,
    throttle,
)
from strongroom.errors import ValidationFailed
from strongroom.identity import (
    antiphishing,
    audit,
    reset,
    service,
    totp,
    two_factor,
    verification,
)
from strongroom.identity.models import AuditEvent, AuthToken, User
from strongroom.identity.schemas import (
    AntiPhishingCodeIn,
    AntiPhishingPreviewIn,
    AntiPhishingPreviewOut,
    AuditEventOut,
    AuditEventsOut,
    EmailChangeIn,
    LoginIn,
    LoginOut,
    MeOut,
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
    StepUpIn,
    TwoFactorConfirmIn,
    TwoFactorDisableIn,
    TwoFactorEnrolOut,
    VerifyEmailIn,
)
from strongroom.identity.step_up import StepUp
from strongroom.notify import render
from strongroom.settings import Settings

router = APIRouter(prefix="/v1", tags=["identity"])
LimitQuery = Annotated[int | None, Query(ge=1)]
SinceQuery = Annotated[
    str | None,
    Query(
        max_length=40,
        pattern=r"^\d{4}-\d{2}-\d{2}"
        r"([Tt ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?([Zz]|[+-]\d{2}:\d{2})?)?$",
        description="an ISO 8601 date or time (`2026-12-01`, `2026-12-01T09:30:00Z`); "
        "UTC when it has no zone",
    ),
]
NO_STORE = {"Cache-Control": "no-store"}


def current_auth(
    session: SessionDep, token: Annotated[str | None, Depends(bearer_token)]
) -> tuple[User, AuthToken]:
    return service.authenticate_session(session=session, token=token)


AuthDep = Annotated[tuple[User, AuthToken], Depends(current_auth)]
LOGIN_REFUSALS: Final[dict[int | str, dict[str, Any]]] = {
    401: {
        "description": "`invalid_credentials` (also for an unknown email), `otp_required` "
        "(2FA is on: send `otp`), `invalid_otp`, `otp_reused`"
    },
    403: {"description": "`two_factor_required`: an operator must turn 2FA on first"},
    429: {
        "description": "`rate_limited` (`details.rule`, `details.retry_after_s`, `Retry-After`), "
        "`account_locked` (`details.locked_until`), `two_factor_blocked`"
    },
}
AuditReaderDep = Annotated[User, operator_with("audit")]


# --------------------------------------------------------------------------- sign-up, sign-in


@router.post(
    "/auth/register",
    status_code=201,
    responses={
        **throttle.THROTTLED,
        422: {
            "description": "`invalid_email`, `weak_password` (`details.reason`), "
            "`invalid_name`, `invalid_region`"
        },
    },
)
def register(
    body: RegisterIn, request: Request, session: SessionDep, settings: SettingsDep
) -> RegisterOut:
    """201 with a user id whether or not the email has an account (nothing tells which); the
    address gets a verification link, or its owner an email that someone tried."""
    throttle.registration(request, session)  # before Argon2 (R-SEC-9)
    signed_up = service.sign_up(
        session=session,
        email=body.email,
        password=body.password,
        name=body.name,
        region=body.region,
        settings=settings.auth,
        public_url=settings.mail.public_url,
        origin=origin_of(request),
    )
    return RegisterOut(user_id=signed_up.user_id)


@router.post(
    "/auth/verify-email",
    status_code=204,
    responses={400: {"description": "`invalid_verification_token`, `malformed_json`"}},
)
def verify_email(body: VerifyEmailIn, request: Request, session: SessionDep) -> Response:
    """Verify an email address with the token its link carries (R-SEC-11)."""
    verification.verify(session=session, token=body.token, origin=origin_of(request))
    return Response(status_code=204)


@router.post("/auth/login", responses=LOGIN_REFUSALS)
def login(body: LoginIn, request: Request, session: SessionDep, settings: SettingsDep) -> LoginOut:
    origin = origin_of(request)
    # before Argon2 (R-SEC-9); a code given with the password counts as a 2FA step too
    counted = throttle.login(request, session, body.email, otp=body.otp is not None)
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
        public_url=settings.mail.public_url,
        origin=origin_of(request),
    )
    return Response(status_code=202)


@router.post(
    "/auth/password-reset/confirm",
    status_code=204,
    responses={
        **throttle.THROTTLED,
        400: {"description": "`invalid_reset_token`: unknown, used or expired"},
        401: {"description": "`otp_required` (2FA is on), `invalid_otp`, `otp_reused`"},
        422: {"description": "`weak_password` (`details.reason`)"},
    },
)
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

STEP_UP_REFUSALS: Final[dict[int | str, dict[str, Any]]] = {
    401: {
        "description": "`invalid_credentials` (wrong password: counts toward this session's "
        "step-up limit, `details.attempts_left`, never the sign-in lockout), `session_revoked` "
        "(the limit was reached: this session is signed out), `otp_required`, `invalid_otp`, "
        "`otp_reused`, `unauthorized`, `invalid_token`, `token_expired`"
    },
    403: {"description": "`reauthentication_required`: send `password` (and `otp`)"},
    429: {"description": "`two_factor_blocked` (`details.blocked_until`)"},
}
"""The ``responses=`` of a route behind the R-SEC-8 step-up."""


def step_up(
    request: Request,
    session: Session,
    settings: Settings,
    auth: tuple[User, AuthToken],
    body: StepUpIn,
) -> StepUp:
    """R-SEC-8: the password again (and the 2FA code when 2FA is on) for this session."""
    user, token = auth
    return service.step_up(
        session=session,
        user=user,
        session_id=token.id,
        password=body.password,
        otp=body.otp,
        settings=settings.auth,
        origin=origin_of(request),
    )


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
        email_verified=verification.is_verified(user),
        phone=user.phone,
    )


@router.post(
    "/me/verify-email/resend",
    status_code=202,
    responses={
        409: {"description": "`email_already_verified`"},
        429: {"description": "`rate_limited`: several links were sent in the last hour"},
    },
)
def resend_verification(
    user: UserDep, request: Request, session: SessionDep, settings: SettingsDep
) -> Response:
    """A new verification link for the account's email (R-SEC-11)."""
    # R-SEC-9: per address and per account, before the service's own cap of
    # auth.verify_emails_per_hour_max links an hour
    throttle.verification_resend(request, session, user.email)
    verification.resend(
        session=session,
        user=user,
        settings=settings.auth,
        public_url=settings.mail.public_url,
        origin=origin_of(request),
    )
    return Response(status_code=202)


@router.put(
    "/me/anti-phishing-code",
    status_code=204,
    responses={**STEP_UP_REFUSALS, 422: {"description": "`invalid_anti_phishing_code`"}},
)
def set_anti_phishing_code(
    body: AntiPhishingCodeIn,
    auth: AuthDep,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
) -> Response:
    """Set or change the code (R-APC-1), after the step-up (R-SEC-8)."""
    proof = step_up(request, session, settings, auth, body)
    service.set_anti_phishing_code(
        session=session,
        user=auth[0],
        code=body.code,
        proof=proof,
        settings=settings.auth,
        origin=origin_of(request),
    )
    return Response(status_code=204)


@router.delete("/me/anti-phishing-code", status_code=204, responses=STEP_UP_REFUSALS)
def remove_anti_phishing_code(
    body: StepUpIn, auth: AuthDep, request: Request, session: SessionDep, settings: SettingsDep
) -> Response:
    """Remove the code, after the step-up (the body: `{password, otp?}`)."""
    proof = step_up(request, session, settings, auth, body)
    service.remove_anti_phishing_code(
        session=session,
        user=auth[0],
        proof=proof,
        settings=settings.auth,
        origin=origin_of(request),
    )
    return Response(status_code=204)


@router.post(
    "/me/anti-phishing-code/preview",
    responses={**STEP_UP_REFUSALS, 422: {"description": "`invalid_anti_phishing_code`"}},
)
def preview_anti_phishing_code(
    body: AntiPhishingPreviewIn,
    auth: AuthDep,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    response: Response,
) -> AntiPhishingPreviewOut:
    """How the banner will look at the top of every email: for ``code`` (nothing more needed:
    it shows only what was sent), or, without one, for the saved code, which only a step-up
    shows (R-SEC-8). A POST: the code never travels in a URL."""
    user = auth[0]
    response.headers.update(NO_STORE)
    shown = body.code
    if shown is None:
        step_up(request, session, settings, auth, StepUpIn(password=body.password, otp=body.otp))
        shown = user.anti_phishing_code
    if shown is None:
        return AntiPhishingPreviewOut(code_set=False, text=None, html=None)
    antiphishing.check_format(shown)
    text, html = render.preview(shown)
    return AntiPhishingPreviewOut(
        code_set=user.anti_phishing_code is not None, text=text, html=html
    )


@router.post(
    "/me/password",
    status_code=204,
    responses={**STEP_UP_REFUSALS, 422: {"description": "`weak_password` (`details.reason`)"}},
)
def change_password(
    body: PasswordChangeIn,
    auth: AuthDep,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
) -> Response:
    """``current_password`` is the step-up's password; other sessions are signed out."""
    proof = step_up(
        request, session, settings, auth, StepUpIn(password=body.current_password, otp=body.otp)
    )
    service.change_password(
        session=session,
        user=auth[0],
        new_password=body.new_password,
        proof=proof,
        settings=settings.auth,
        origin=origin_of(request),
    )
    return Response(status_code=204)


@router.put(
    "/me/email",
    status_code=204,
    responses={
        **STEP_UP_REFUSALS,
        409: {"description": "`email_taken`"},
        422: {"description": "`invalid_email`"},
    },
)
def change_email(
    body: EmailChangeIn, auth: AuthDep, request: Request, session: SessionDep, settings: SettingsDep
) -> Response:
    """Change the email after the step-up; the new address is verified by its emailed link
    before money moves again."""
    proof = step_up(request, session, settings, auth, body)
    service.change_email(
        session=session,
        user=auth[0],
        new_email=body.email,
        proof=proof,
        settings=settings.auth,
        public_url=settings.mail.public_url,
        origin=origin_of(request),
    )
    return Response(status_code=204)


# --------------------------------------------------------------------------- 2FA


@router.post(
    "/me/2fa",
    responses={**STEP_UP_REFUSALS, 409: {"description": "`two_factor_already_enabled`"}},
)
def begin_two_factor(
    body: StepUpIn,
    auth: AuthDep,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    response: Response,
) -> TwoFactorEnrolOut:
    """Start an enrolment after the step-up (the body: `{password}`): a token alone cannot
    put its holder's authenticator on the account."""
    proof = step_up(request, session, settings, auth, body)
    enrolment = service.begin_two_factor(
        session=session, user=auth[0], proof=proof, settings=settings.auth
    )
    response.headers.update(NO_STORE)
    return TwoFactorEnrolOut(secret=enrolment.secret, otpauth_uri=enrolment.otpauth_uri)


@router.get(
    "/me/2fa/qr.svg",
    response_class=Response,
    responses={
        200: {"content": {"image/svg+xml": {"schema": {"type": "string"}}}},
        404: {"description": "`no_enrolment_in_progress`"},
    },
)
def two_factor_qr(user: UserDep, session: SessionDep, settings: SettingsDep) -> Response:
    """The enrolment in progress as a QR code to scan with an authenticator app."""
    uri = two_factor.pending_uri(session=session, user=user, settings=settings.auth)
    return Response(content=totp.qr_svg(uri), media_type="image/svg+xml", headers=NO_STORE)


@router.post(
    "/me/2fa/confirm",
    responses={
        **STEP_UP_REFUSALS,
        409: {"description": "`no_enrolment_in_progress`"},
        429: {"description": "`two_factor_blocked`, `rate_limited`"},
    },
)
def confirm_two_factor(
    body: TwoFactorConfirmIn,
    auth: AuthDep,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    response: Response,
) -> RecoveryCodesOut:
    """Turn 2FA on with the first code of the new authenticator and the password."""
    user, _ = auth
    throttle.two_factor(request, session, user.email)
    proof = step_up(request, session, settings, auth, StepUpIn(password=body.password))
    codes = service.confirm_two_factor(
        session=session,
        user=user,
        otp=body.otp,
        proof=proof,
        settings=settings.auth,
        origin=origin_of(request),
    )
    response.headers.update(NO_STORE)
    return RecoveryCodesOut(recovery_codes=codes)


@router.post(
    "/me/2fa/disable",
    status_code=204,
    responses={
        **STEP_UP_REFUSALS,
        409: {"description": "`two_factor_not_enabled`"},
        429: {"description": "`two_factor_blocked`, `rate_limited`"},
    },
)
def disable_two_factor(
    body: TwoFactorDisableIn,
    auth: AuthDep,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
) -> Response:
    """Turn 2FA off with the password and a current code or a recovery code."""
    user, _ = auth
    throttle.two_factor(request, session, user.email)
    proof = step_up(
        request, session, settings, auth, StepUpIn(password=body.password, otp=body.otp)
    )
    service.disable_two_factor(
        session=session, user=user, proof=proof, settings=settings.auth, origin=origin_of(request)
    )
    return Response(status_code=204)


@router.post(
    "/me/2fa/recovery-codes",
    responses={
        **STEP_UP_REFUSALS,
        409: {"description": "`two_factor_not_enabled`"},
        429: {"description": "`two_factor_blocked`, `rate_limited`"},
    },
)
def regenerate_recovery_codes(
    body: StepUpIn,
    auth: AuthDep,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    response: Response,
) -> RecoveryCodesOut:
    """New recovery codes (the old ones stop working), with the password and a code."""
    user, _ = auth
    throttle.two_factor(request, session, user.email)
    proof = step_up(request, session, settings, auth, body)
    codes = service.regenerate_recovery_codes(
        session=session, user=user, proof=proof, settings=settings.auth, origin=origin_of(request)
    )
    response.headers.update(NO_STORE)
    return RecoveryCodesOut(recovery_codes=codes)


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


@router.delete(
    "/me/sessions/{session_id}",
    status_code=204,
    responses={404: {"description": "`session_not_found`"}},
)
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


@router.get("/me/security-events", responses={422: {"description": "`invalid_cursor`"}})
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


@router.get(
    "/admin/audit",
    tags=["operator"],
    responses={422: {"description": "`invalid_cursor`, `invalid_since`"}},
)
def audit_search(
    operator: AuditReaderDep,
    session: SessionDep,
    settings: SettingsDep,
    actor: Annotated[str | None, Query(max_length=254)] = None,
    action: Annotated[str | None, Query(max_length=80)] = None,
    since: SinceQuery = None,
    subject: Annotated[str | None, Query(max_length=32)] = None,
    category: Annotated[str | None, Query(pattern="^(security|operator)$")] = None,
    cursor: str | None = None,
    limit: LimitQuery = None,
) -> AuditEventsOut:
    """Search the audit log (admins): by actor (id or email), action (or its dotted prefix),
    time, subject user and category; newest first."""
    size = min(limit or settings.auth.audit_page_size_default, settings.auth.audit_page_size_max)
    page = audit.search(
        session=session,
        limit=size,
        cursor=cursor,
        actor=actor,
        action=action,
        since=_since(since),
        subject_user_id=subject,
        category=category,
    )
    return AuditEventsOut(items=[_audit_out(e) for e in page.items], next_cursor=page.next_cursor)


def _since(text: str | None) -> datetime | None:
    """An ISO 8601 date or time; one without a zone is taken as UTC."""
    if text is None:
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError as error:  # the pattern passed, the calendar did not (2026-02-30)
        raise ValidationFailed("since is not a valid time", code="invalid_since") from error
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


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
