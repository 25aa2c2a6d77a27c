"""The operator console over HTTP, without a browser, on PostgreSQL: the two-step sign-in for
operators only (a non-operator reads exactly as a wrong password), 2FA required, the role table
(navigation and 403), one audit event per console request, CSRF on every console form (found
from the router), security headers, and what each screen shows: the dashboard's figures, users
and a user's page, the audit log's filters, the outbox, and no inbox outside the demo."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import httpx
import pyotp
from fastapi.routing import APIRoute
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from strongroom import db
from strongroom.identity import audit
from strongroom.identity import service as identity
from strongroom.identity.models import AuditEvent
from strongroom.notify import delivery, outbox
from strongroom.notify.models import FAILED, OutboxEmail
from strongroom.settings import MailSettings
from strongroom.web import console
from strongroom.web.console.access import ACCESS
from tests.api.conftest import PASSWORD, make_settings

from .conftest import (
    assert_locked_down,
    csrf_token,
    fingerprint,
    new_client,
    sandbox_topup,
    web_sign_in,
    web_user,
)
from .console_support import console_sign_in, make_operator, password_step

SCREENS = {  # a console page of each screen
    "dashboard": "/console/",
    "users": "/console/users",
    "adjustments": "/console/adjustments",
    "fx.rates": "/console/fx",
    "webhooks": "/console/webhooks",
    "reconciliation": "/console/reconciliation",
    "payouts": "/console/payouts",
    "merchants": "/console/merchants",
    "kyc": "/console/kyc",
    "audit": "/console/audit",
    "outbox": "/console/outbox",
}
WRONG = "The email or password is wrong."


def _alert(html: str) -> str:
    found = re.search(r'<p class="alert" role="alert">(.*?)</p>', html, re.S)
    assert found is not None, "no alert on the page"
    return found.group(1)


def _h1(html: str) -> str:
    found = re.search(r"<h1[^>]*>(.*?)</h1>", html, re.S)
    assert found is not None
    return found.group(1).strip()


def _nav(html: str) -> set[str]:
    found = re.search(r'<nav class="side"[^>]*>(.*?)</nav>', html, re.S)
    return set(re.findall(r'href="([^"]+)"', found.group(1))) if found else set()


def _user_id(engine: Engine, email: str) -> str:
    with db.make_session_factory(engine)() as session:
        user = identity.find_user(session=session, reference=email)
        assert user is not None
        return user.id


def _events(engine: Engine, **where: object) -> list[AuditEvent]:
    with db.make_session_factory(engine)() as session:
        return list(session.scalars(select(AuditEvent).filter_by(**where).order_by(AuditEvent.id)))


def _active_sessions(engine: Engine, email: str) -> int:
    with db.make_session_factory(engine)() as session:
        user = identity.find_user(session=session, reference=email)
        assert user is not None
        return len(
            identity.active_sessions(
                session=session, user=user, settings=make_settings(engine).auth
            )
        )


def _emails(engine: Engine, user_id: str, template_id: str) -> int:
    with db.make_session_factory(engine)() as session:
        return int(
            session.scalar(
                select(func.count())
                .select_from(OutboxEmail)
                .where(OutboxEmail.user_id == user_id, OutboxEmail.template_id == template_id)
            )
            or 0
        )


def _set_cookies(response: httpx.Response) -> dict[str, str]:
    return {line.split("=", 1)[0]: line for line in response.headers.get_list("set-cookie")}


# --------------------------------------------------------------------------- signing in


def test_an_operator_signs_in_with_the_password_then_the_code(
    http: httpx.Client, pg_db: Engine
) -> None:
    operator = make_operator(pg_db, "support")
    assert operator.totp_secret is not None
    first = password_step(http, operator.email, operator.password)
    assert first.status_code == 303 and first.headers["location"] == "/console/signin/code"
    pending = _set_cookies(first)["sr_pending"]
    assert "Path=/console/signin" in pending and "SameSite=strict" in pending
    assert "HttpOnly" in pending and "sr_session" not in http.cookies
    code_page = http.get("/console/signin/code")
    token = csrf_token(code_page.text)
    wrong = http.post("/console/signin/code", data={"csrf_token": token, "otp": "000000"})
    assert wrong.status_code == 401
    assert _alert(wrong.text).startswith("That code is not right")
    right = http.post(
        "/console/signin/code",
        data={"csrf_token": token, "otp": pyotp.TOTP(operator.totp_secret).now()},
    )
    assert right.status_code == 303 and right.headers["location"] == "/console/"
    session_line = _set_cookies(right)["sr_session"]
    assert "HttpOnly" in session_line and "SameSite=lax" in session_line
    dashboard = http.get("/console/")
    assert dashboard.status_code == 200 and operator.email in dashboard.text
    assert dashboard.headers["cache-control"] == "no-store"
    # an identity session like any other: listed, and signing out revokes it on the server
    assert _active_sessions(pg_db, operator.email) == 1
    signed_in = _events(
        pg_db, action="login.succeeded", subject_user_id=_user_id(pg_db, operator.email)
    )
    assert len(signed_in) == 1
    out = http.post("/console/signout", data={"csrf_token": csrf_token(dashboard.text)})
    assert out.status_code == 303 and out.headers["location"] == "/console/signin"
    assert _active_sessions(pg_db, operator.email) == 0
    assert http.get("/console/").status_code == 303


def test_a_non_operator_is_refused_exactly_like_a_wrong_password(
    http: httpx.Client, live_url: str, pg_db: Engine
) -> None:
    user = web_user(pg_db, "Plain")
    with_2fa = web_user(pg_db, "Careful", two_factor=True)
    operator = make_operator(pg_db)
    user_id = _user_id(pg_db, user.email)
    alerts_before = _emails(pg_db, user_id, "security.login_alert")
    answers = {}
    for label, email, password in (
        ("non-operator, right password", user.email, user.password),
        ("non-operator with 2FA, right password", with_2fa.email, with_2fa.password),
        ("operator, wrong password", operator.email, "not-the-password-1"),
        ("unknown email", "nobody.here@example.com", PASSWORD),
    ):
        with new_client(live_url) as client:
            response = password_step(client, email, password)
            answers[label] = (response.status_code, _alert(response.text))
            assert "sr_session" not in client.cookies and "sr_pending" not in client.cookies
    assert set(answers.values()) == {(401, WRONG)}, answers
    # nothing of a sign-in happened for the non-operator: no session, no alert email
    assert _active_sessions(pg_db, user.email) == 0
    assert _emails(pg_db, user_id, "security.login_alert") == alerts_before
    assert not _events(pg_db, action="login.succeeded", subject_user_id=user_id)
    assert len(_events(pg_db, action="login.failed", subject_user_id=user_id)) == 1
    # and it counts like a wrong password: the fifth locks the email, as for anyone
    for _ in range(4):
        last = password_step(http, user.email, user.password)
    assert last.status_code == 429 and _alert(last.text).startswith("Too many wrong attempts")


def test_an_operator_without_two_factor_is_told_to_turn_it_on(
    http: httpx.Client, pg_db: Engine
) -> None:
    operator = make_operator(pg_db, "admin", two_factor=False)
    wrong = password_step(http, operator.email, "not-the-password-1")
    assert (wrong.status_code, _alert(wrong.text)) == (401, WRONG)  # reveals nothing
    response = password_step(http, operator.email, operator.password)
    assert response.status_code == 403
    assert "Operators must use two-step verification" in _alert(response.text)
    assert "sr_session" not in http.cookies and "sr_pending" not in http.cookies
    assert _active_sessions(pg_db, operator.email) == 0
    # signed in through the Lite app (no 2FA asked there), the console still refuses
    web_sign_in(http, operator)
    page = http.get("/console/users")
    assert page.status_code == 403 and _h1(page.text) == "Turn on two-step verification"


def test_a_signed_in_user_who_is_not_an_operator_gets_403_and_keeps_the_app(
    http: httpx.Client, pg_db: Engine
) -> None:
    user = web_user(pg_db)
    web_sign_in(http, user)
    for path in (*SCREENS.values(), f"/console/users/{_user_id(pg_db, user.email)}"):
        response = http.get(path)
        assert response.status_code == 403, path
        assert _h1(response.text) == "Operators only"
        assert 'href="/console/signin"' in response.text and not _nav(response.text)
    assert http.get("/app/").status_code == 200  # still signed in to the Lite app
    assert not _events(pg_db, category=audit.OPERATOR)


def test_strangers_are_sent_to_the_console_sign_in_and_come_back(
    http: httpx.Client, pg_db: Engine
) -> None:
    victim = web_user(pg_db, "Victim")
    victim_id = _user_id(pg_db, victim.email)
    open_pages = {"/console", "/console/signin", "/console/signin/code"}
    gets = sorted(
        route.path
        for screen in console.SCREENS
        for route in screen.routes
        if isinstance(route, APIRoute) and "GET" in (route.methods or ())
    )
    assert set(gets) >= open_pages | {"/console/", "/console/users", "/console/audit"}
    for path in gets:
        if path in open_pages:
            continue
        concrete = path.replace("{user_id}", victim_id)
        response = http.get(concrete)
        assert response.status_code == 303, path
        assert response.headers["location"].startswith("/console/signin"), path
        assert victim.email not in response.text
    # after signing in, the page asked for (a console page only)
    operator = make_operator(pg_db)
    assert operator.totp_secret is not None
    asked = http.get(f"/console/users/{victim_id}").headers["location"]
    assert asked == f"/console/signin?next=/console/users/{victim_id}"
    page = http.get(asked)
    token = csrf_token(page.text)
    first = http.post(
        asked, data={"csrf_token": token, "email": operator.email, "password": PASSWORD}
    )
    assert (
        first.headers["location"] == f"/console/signin/code?next=%2Fconsole%2Fusers%2F{victim_id}"
    )
    code = http.get(first.headers["location"])
    second = http.post(
        first.headers["location"],
        data={"csrf_token": csrf_token(code.text), "otp": pyotp.TOTP(operator.totp_secret).now()},
    )
    assert second.headers["location"] == f"/console/users/{victim_id}"
    assert http.get("/console/signin?next=https://evil.example/").headers["location"] == (
        "/console/"
    )


# --------------------------------------------------------------------------- roles and audit


def test_each_role_sees_and_opens_only_its_screens_and_every_request_is_audited(
    live_url: str, pg_db: Engine
) -> None:
    customer = web_user(pg_db, "Customer")
    sandbox_topup(pg_db, customer.email, "42.00")
    customer_id = _user_id(pg_db, customer.email)
    for role in identity.OPERATOR_ROLES:
        operator = make_operator(pg_db, role)
        operator_id = _user_id(pg_db, operator.email)
        with new_client(live_url) as client:
            console_sign_in(client, operator)
            dashboard = client.get("/console/")
            allowed = {screen for screen in SCREENS if role in ACCESS[screen]}
            assert _nav(dashboard.text) == {SCREENS[screen] for screen in allowed}, role
            for screen, path in SCREENS.items():
                response = client.get(path)
                assert response.status_code == (200 if screen in allowed else 403), (role, path)
                if screen not in allowed:
                    assert _h1(response.text) == "Not for your role"
                    assert _nav(response.text) == {SCREENS[s] for s in allowed}  # in the layout
            user_page = client.get(f"/console/users/{customer_id}").text
            assert ('data-asset="HKD"' in user_page) is (role in ACCESS["balances"]), role
            assert ('id="events-title"' in user_page) is (role in ACCESS["security_events"]), role
        recorded = _events(pg_db, action="operator.api", actor_id=operator_id)
        paths = [audit.details(event)["path"] for event in recorded]
        assert paths == ["/console/", *SCREENS.values(), f"/console/users/{customer_id}"], role
        assert {event.actor_role for event in recorded} == {role}
        assert all(event.ip == "127.0.0.1" for event in recorded)


def test_a_support_operator_has_no_audit_log(http: httpx.Client, pg_db: Engine) -> None:
    console_sign_in(http, make_operator(pg_db, "support"))
    dashboard = http.get("/console/").text
    assert "/console/audit" not in dashboard and "Audit log" not in dashboard
    refused = http.get("/console/audit?action=login")
    assert refused.status_code == 403
    assert "login.succeeded" not in refused.text and "<table" not in refused.text


# --------------------------------------------------------------------------- CSRF, headers


def test_every_console_form_refuses_a_missing_or_wrong_csrf_token(
    http: httpx.Client, live_url: str, pg_db: Engine
) -> None:
    operator = make_operator(pg_db)
    console_sign_in(http, operator)
    session_token = http.cookies["sr_session"]
    right = csrf_token(http.get("/console/").text)
    with new_client(live_url) as stranger:
        foreign = csrf_token(stranger.get("/console/signin").text)
    routes = sorted(
        route.path
        for screen in console.SCREENS
        for route in screen.routes
        if isinstance(route, APIRoute) and "POST" in (route.methods or ())
    )
    assert {"/console/signin", "/console/signin/code", "/console/signout"} <= set(routes)
    form = {"email": operator.email, "password": PASSWORD, "otp": "123456"}
    before = fingerprint(pg_db)
    for path in routes:
        for token in (None, "", "wrong", foreign, right + "x"):
            data = form if token is None else {**form, "csrf_token": token}
            response = http.post(path, data=data)
            assert response.status_code == 403, (path, token)
            assert "This form has expired" in response.text
        assert http.post(path, data=form, headers={"X-CSRF-Token": foreign}).status_code == 403
    assert fingerprint(pg_db) == before
    assert _active_sessions(pg_db, operator.email) == 1
    assert http.post("/console/signout", data={"csrf_token": right}).status_code == 303
    assert _active_sessions(pg_db, operator.email) == 0
    assert session_token not in http.cookies.values()


def test_console_pages_send_the_security_headers_and_no_inline_code(
    http: httpx.Client, pg_db: Engine
) -> None:
    anonymous = http.get("/console/signin")
    console_sign_in(http, make_operator(pg_db))
    user_id = _user_id(pg_db, web_user(pg_db).email)
    pages = [anonymous] + [
        http.get(path) for path in (*SCREENS.values(), f"/console/users/{user_id}", "/console/x")
    ]
    for response in pages:
        assert_locked_down(http, response)
    assert pages[-1].status_code == 404 and _h1(pages[-1].text) == "Page not found"


# --------------------------------------------------------------------------- the screens


def test_the_dashboard_counts_users_todays_volume_and_the_backlog(
    http: httpx.Client, pg_db: Engine
) -> None:
    ann, ben = web_user(pg_db, "Ann"), web_user(pg_db, "Ben")
    sandbox_topup(pg_db, ann.email, "1234.50")
    sandbox_topup(pg_db, ann.email, "0.5", "USDT")
    with db.unit_of_work(db.make_session_factory(pg_db)) as session:
        from strongroom.payments import service as payments

        sender = identity.find_user(session=session, reference=ann.email)
        assert sender is not None
        payments.send(
            session=session,
            sender=sender,
            to=ben.email,
            amount=make_settings(pg_db).asset_registry().money("100.00", "HKD"),
            note=None,
        )
    # every email so far fails for good (no SMTP server there, one attempt allowed)
    dead = make_settings(pg_db).model_copy(
        update={"smtp_port": 9, "mail": MailSettings(max_attempts=1, smtp_timeout_s=2, lease_s=10)}
    )
    report = delivery.deliver_once(db.make_session_factory(pg_db), dead)
    # each user's verification link and welcome email (R-SEC-11)
    assert report.failed == report.claimed == 4
    operator = make_operator(pg_db)  # signing in adds a notice (an operator gets no welcome)
    console_sign_in(http, operator)
    html = http.get("/console/").text

    def figure(name: str) -> str:
        found = re.search(
            rf'data-figure="{name}">.*?class="value">(?:<a[^>]*>)?([^<]+)', html, re.S
        )
        assert found is not None, name
        return found.group(1)

    assert (figure("users"), figure("operators")) == ("2", "1")
    assert (figure("pending"), figure("failed")) == ("1", "4")
    assert re.search(r'data-asset="HKD"><th scope="row">HKD</th><td class="num">1,334.50<', html)
    assert re.search(r'data-asset="USDT"><th scope="row">USDT</th><td class="num">0.500000<', html)
    assert datetime.now(UTC).date().isoformat() in html


def test_users_are_found_by_any_part_of_the_email_or_by_id(
    http: httpx.Client, pg_db: Engine
) -> None:
    target = web_user(pg_db, "Findme")
    other = web_user(pg_db, "Someone")
    target_id = _user_id(pg_db, target.email)
    console_sign_in(http, make_operator(pg_db))
    local_part = target.email.split("@")[0]
    for query in ("findme.", local_part[3:], target.email.upper(), target_id):
        html = http.get("/console/users", params={"q": query}).text
        assert f'href="/console/users/{target_id}"' in html, query
        assert other.email not in html, query
    assert "No user matches." in http.get("/console/users", params={"q": "zz-nobody"}).text
    everyone = http.get("/console/users").text
    assert target.email in everyone and other.email in everyone
    missing = http.get("/console/users/u_0000000000000000")
    assert missing.status_code == 404 and _h1(missing.text) == "Page not found"


def test_a_users_page_shows_balances_and_security_events_a_page_at_a_time(
    http: httpx.Client, live_url: str, pg_db: Engine
) -> None:
    user = web_user(pg_db, "Evented")
    sandbox_topup(pg_db, user.email, "1234567.89")
    sandbox_topup(pg_db, user.email, "0.00000001", "BTC")
    with new_client(live_url) as intruder:  # a wrong password: a security event of the user
        web_sign_in_refused = intruder.post(
            "/app/signin",
            data={
                "csrf_token": csrf_token(intruder.get("/app/signin").text),
                "email": user.email,
                "password": "not-the-password-1",
            },
        )
        assert web_sign_in_refused.status_code == 401
    settings = make_settings(pg_db).auth
    with db.unit_of_work(db.make_session_factory(pg_db)) as session:
        row = identity.find_user(session=session, reference=user.email)
        assert row is not None
        issued = identity.issue_token(session=session, user=row, ttl_s=600)
        proof = identity.step_up(  # R-SEC-8: the password again, in a session of the user
            session=session,
            user=row,
            session_id=issued.session_id,
            password=user.password,
            otp=None,
            settings=settings,
        )
        for number in range(24):  # 24 code changes: more than one page of events
            identity.set_anti_phishing_code(
                session=session, user=row, code=f"Qx{number:02d}", proof=proof, settings=settings
            )
    user_id = _user_id(pg_db, user.email)
    console_sign_in(http, make_operator(pg_db, "admin"))  # balances: admin, finance (R-SEC-10)
    first = http.get(f"/console/users/{user_id}").text
    assert re.search(
        r'data-asset="HKD"><th scope="row">HKD</th><td class="num">1,234,567.89<', first
    )
    assert re.search(r'data-asset="BTC"><th scope="row">BTC</th><td class="num">0.00000001<', first)
    assert 'data-fact="anti-phishing">Set<' in first and "Qx23" not in first  # never the code
    rows = re.findall(r'<tr data-action="([^"]+)">', first)
    assert len(rows) == 20 and set(rows) == {"anti_phishing_code.set"}
    next_link = re.search(r'href="([^"]+)" rel="next"', first)
    assert next_link is not None
    second = http.get(next_link.group(1).replace("&amp;", "&")).text
    older = re.findall(r'<tr data-action="([^"]+)">', second)
    assert older == ["anti_phishing_code.set"] * 4 + [
        "login.failed",
        "email.verified",
        "email.verification_sent",
        "account.registered",
    ]
    assert 'rel="next"' not in second and "First page" in second
    bad = http.get(f"/console/users/{user_id}", params={"events": "not-a-cursor"})
    assert bad.status_code == 422


def test_the_audit_log_filters_by_actor_action_and_days_and_pages(
    http: httpx.Client, pg_db: Engine
) -> None:
    web_user(pg_db, "Logged")  # account.registered
    admin = make_operator(pg_db)
    with db.unit_of_work(db.make_session_factory(pg_db)) as session:
        for number in range(55):
            audit.record(session=session, action="test.filler", details={"n": number})
    console_sign_in(http, admin)

    def actions(**params: str) -> list[str]:
        response = http.get("/console/audit", params=params)
        assert response.status_code == 200, response.text
        return re.findall(r'<tr data-action="([^"]+)">', response.text)

    assert set(actions(action="login")) == {"login.succeeded"}
    assert set(actions(actor=admin.email)) == {"operator.api"}
    assert set(actions(category="operator")) == {"operator.api"}
    today = datetime.now(UTC).date()
    assert (
        len(
            actions(
                **{
                    "from": (today - timedelta(days=1)).isoformat(),
                    "to": (today + timedelta(days=1)).isoformat(),
                    "action": "test",
                }
            )
        )
        == 50
    )
    assert actions(**{"from": (today + timedelta(days=2)).isoformat()}) == []
    assert actions(**{"to": (today - timedelta(days=2)).isoformat()}) == []
    page = http.get("/console/audit", params={"action": "test.filler"}).text
    next_link = re.search(r'href="([^"]+)" rel="next"', page)
    assert next_link is not None and "action=test.filler" in next_link.group(1)
    rest = http.get(next_link.group(1).replace("&amp;", "&")).text
    assert len(re.findall(r'<tr data-action="test.filler">', rest)) == 5
    for params, message in (
        ({"from": "1 Dec"}, "Enter dates as YYYY-MM-DD."),
        ({"from": "2026-12-02", "to": "2026-12-01"}, "The end of the range is before its start."),
    ):
        refused = http.get("/console/audit", params=params)
        assert refused.status_code == 422 and _alert(refused.text) == message
        assert "<table" not in refused.text


def test_the_outbox_lists_status_template_recipient_attempts_and_errors(
    http: httpx.Client, pg_db: Engine
) -> None:
    user = web_user(pg_db, "Mailed")
    user_id = _user_id(pg_db, user.email)
    dead = make_settings(pg_db).model_copy(
        update={"smtp_port": 9, "mail": MailSettings(max_attempts=1, smtp_timeout_s=2, lease_s=10)}
    )
    # the verification link and the welcome email fail
    delivery.deliver_once(db.make_session_factory(pg_db), dead)
    with db.unit_of_work(db.make_session_factory(pg_db)) as session:
        row = identity.find_user(session=session, reference=user.email)
        assert row is not None
        for _ in range(55):
            outbox.send_to_user(
                session=session,
                user=row,
                template_id="security.login_alert",
                context={"at": datetime.now(UTC), "ip": None, "user_agent": None},
            )
    console_sign_in(http, make_operator(pg_db, "support"))
    failed = http.get("/console/outbox", params={"status": "failed"}).text
    rows = re.findall(r'<tr data-template="([^"]+)" data-status="([^"]+)">', failed)
    assert rows == [("account.welcome", "failed"), ("account.verify_email", "failed")]
    assert user.email in failed and "ConnectionRefusedError" in failed
    assert re.search(r'<td class="num">1</td>', failed)  # attempts
    assert "Your Strongroom account is ready" not in failed  # never a body
    mine = http.get("/console/outbox", params={"user": user_id}).text
    assert len(re.findall(r"<tr data-template=", mine)) == 50
    next_link = re.search(r'href="([^"]+)" rel="next"', mine)
    assert next_link is not None
    rest = http.get(next_link.group(1).replace("&amp;", "&")).text
    # 5 alerts, the welcome email, the verification link
    assert len(re.findall(r"<tr data-template=", rest)) == 7
    with db.make_session_factory(pg_db)() as session:
        assert session.scalar(select(func.count()).where(OutboxEmail.status == FAILED)) == 2


def test_the_inbox_exists_only_in_the_demo(http: httpx.Client, pg_db: Engine) -> None:
    console_sign_in(http, make_operator(pg_db))
    assert "/console/inbox" not in _nav(http.get("/console/").text)
    missing = http.get("/console/inbox")
    assert missing.status_code == 404 and _h1(missing.text) == "Page not found"
