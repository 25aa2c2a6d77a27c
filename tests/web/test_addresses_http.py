"""The Lite crypto address book and whitelist mode over HTTP against the live server on
PostgreSQL (issue #12): signed-out browsers go to the sign-in page, forms need their CSRF token,
refusals are clear and write nothing (a wrong password only counts toward the step-up limit),
whitelisting an address and switching the mode are security changes (the 24-hour freeze and
the email, from ``withdrawals.service``), the withdraw page offers the saved addresses, and
another user's address is 404."""

from __future__ import annotations

import re
from html import unescape

import httpx
import pyotp
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from strongroom import db
from strongroom.identity import service as identity
from strongroom.identity.models import User
from strongroom.notify.models import OutboxEmail
from strongroom.withdrawals import service as withdrawals
from strongroom.withdrawals.models import WithdrawalAddress
from tests.api.conftest import make_settings

from .conftest import WebUser, csrf_token, fingerprint, new_client, web_sign_in, web_user

PATH = "/app/addresses"
BTC_ADDRESS = "bc1qxy2kgdygjrsqtzq2n0yrf2493p83kkfjhx0wl3"
ETH_ADDRESS = "0x52908400098527886E0F7030069857D2E4169EE7"


def _alert(html: str) -> str:
    found = re.search(r'<p class="alert" role="alert">(.*?)</p>', html, re.S)
    assert found is not None, "no alert on the page"
    return unescape(found.group(1))


def _success(html: str) -> str:
    found = re.search(r'<p class="success" role="status">.*?<span>(.*?)</span>', html, re.S)
    assert found is not None, "no success notice on the page"
    return unescape(found.group(1))


def _post(http: httpx.Client, path: str, **form: str) -> httpx.Response:
    token = csrf_token(http.get(PATH).text)
    return http.post(path, data={"csrf_token": token, **form})


def _add(http: httpx.Client, **form: str) -> httpx.Response:
    fields = {"asset": "BTC", "address": BTC_ADDRESS, "label": "Cold wallet", "password": ""}
    return _post(http, PATH, **(fields | form))


def _without_step_up_rows(rows: dict[str, int]) -> dict[str, int]:
    """A wrong password is counted (a kept record) and audited; nothing else may change."""
    return {k: v for k, v in rows.items() if k not in ("identity_step_up_failures", "audit_events")}


def _user(engine: Engine, user: WebUser) -> User:
    with db.make_session_factory(engine)() as session:
        row = session.scalars(select(User).where(User.email == user.email)).one()
        session.expunge(row)
        return row


def _security_emails(engine: Engine, user: WebUser) -> int:
    with db.make_session_factory(engine)() as session:
        return (
            session.scalar(
                select(func.count())
                .select_from(OutboxEmail)
                .where(
                    OutboxEmail.to_address == user.email,
                    OutboxEmail.template_id == "security.settings_changed",
                )
            )
            or 0
        )


def _addresses(engine: Engine) -> list[WithdrawalAddress]:
    with db.make_session_factory(engine)() as session:
        rows = list(session.scalars(select(WithdrawalAddress).order_by(WithdrawalAddress.id)))
        session.expunge_all()
        return rows


def test_signed_out_and_without_the_csrf_token(http: httpx.Client, pg_db: Engine) -> None:
    anonymous = http.get(PATH)
    assert anonymous.status_code == 303 and anonymous.headers["location"].startswith("/app/signin")
    user = web_user(pg_db, "Alice")
    web_sign_in(http, user)
    before = fingerprint(pg_db)
    for path in (PATH, f"{PATH}/whitelist-mode"):
        form = {"asset": "BTC", "address": BTC_ADDRESS, "password": user.password}
        for data in (form | {"whitelist_only": "true"}, {**form, "csrf_token": "wrong"}):
            refused = http.post(path, data=data)
            assert refused.status_code == 403 and "This form has expired" in refused.text
    assert fingerprint(pg_db) == before


def test_refusals_write_nothing_and_an_address_is_added(http: httpx.Client, pg_db: Engine) -> None:
    user = web_user(pg_db, "Alice")
    web_sign_in(http, user)
    first = http.get(PATH)
    assert first.status_code == 200 and 'data-whitelist-only="off"' in first.text
    assert "No address is in your book yet." in first.text
    assert '<option value="BTC"' in first.text and '<option value="HKD"' not in first.text
    before = fingerprint(pg_db)
    cases = [
        ({"address": "abc"}, 422, "An address is 8 to 128 letters and digits."),
        ({"address": "bc1q-not/an address"}, 422, "An address is 8 to 128 letters and digits."),
        ({"asset": "HKD"}, 422, "Choose a crypto asset: fiat goes to a linked bank account."),
        ({"label": "x" * 61}, 422, "A label is at most 60 characters."),
        ({"password": ""}, 403, "Enter your password to make this change."),
    ]
    for form, status, text in cases:
        response = _add(http, **({"password": user.password} | form))
        assert response.status_code == status, (form, response.text)
        assert _alert(response.text) == text
        typed = form.get("label", "Cold wallet")
        assert f'value="{typed}"' in response.text  # what was typed is kept
    assert fingerprint(pg_db) == before
    wrong = _add(http, password="not-the-password")
    assert wrong.status_code == 401 and _alert(wrong.text) == "Your password is wrong."
    assert 'name="password" type="password"' in wrong.text and "not-the-password" not in wrong.text
    assert _without_step_up_rows(fingerprint(pg_db)) == _without_step_up_rows(before)

    done = _add(http, password=user.password)
    assert done.status_code == 303 and done.headers["location"] == PATH
    page = http.get(PATH).text
    assert _success(page) == "The address was added."
    assert BTC_ADDRESS in page and "Cold wallet" in page and 'data-whitelisted="no"' in page
    assert _user(pg_db, user).withdrawals_frozen_until is None  # a plain address: no freeze
    assert _security_emails(pg_db, user) == 0
    duplicate = _add(http, password=user.password, label="again")
    assert duplicate.status_code == 409
    assert _alert(duplicate.text) == "This address is in your address book already."
    assert [row.label for row in _addresses(pg_db)] == ["Cold wallet"]


def test_whitelisting_is_a_security_change_and_the_withdraw_page_offers_the_book(
    http: httpx.Client, pg_db: Engine
) -> None:
    user = web_user(pg_db, "Alice")
    web_sign_in(http, user)
    assert _add(http, password=user.password).status_code == 303
    done = _add(
        http, password=user.password, asset="ETH", address=ETH_ADDRESS, label="", whitelisted="yes"
    )
    assert done.status_code == 303
    page = http.get(PATH).text
    assert _success(page) == "The address was added to your whitelist."
    assert 'class="freeze"' in page  # R-SEC-5: withdrawals paused
    assert _user(pg_db, user).withdrawals_frozen_until is not None
    assert _security_emails(pg_db, user) == 1
    plain, whitelisted = _addresses(pg_db)
    assert (plain.whitelisted, whitelisted.whitelisted, whitelisted.label) == (False, True, None)
    offered = http.get("/app/withdraw").text
    assert f'value="address:{plain.id}"' in offered
    assert f'value="address:{whitelisted.id}"' in offered

    switched = _post(http, f"{PATH}/whitelist-mode", whitelist_only="true", password=user.password)
    assert switched.status_code == 303
    page = http.get(PATH).text
    assert _success(page).startswith("Whitelist mode is on")
    assert 'data-whitelist-only="on"' in page and "Turn whitelist mode off" in page
    assert _security_emails(pg_db, user) == 2
    with db.make_session_factory(pg_db)() as session:
        owner = session.scalars(select(User).where(User.email == user.email)).one()
        assert withdrawals.preferences(session=session, user=owner).whitelist_only

    wrong = _post(http, f"{PATH}/whitelist-mode", whitelist_only="false", password="nope-nope")
    assert wrong.status_code == 401 and _alert(wrong.text) == "Your password is wrong."
    removed = _post(http, f"{PATH}/{whitelisted.id}/remove", password=user.password)
    assert removed.status_code == 303
    assert _success(http.get(PATH).text) == "The address was removed."
    assert _security_emails(pg_db, user) == 3  # a whitelisted one: a security change
    assert [row.removed_at is not None for row in _addresses(pg_db)] == [False, True]
    off = _post(http, f"{PATH}/whitelist-mode", whitelist_only="false", password=user.password)
    assert off.status_code == 303 and 'data-whitelist-only="off"' in http.get(PATH).text


def test_the_code_is_needed_when_two_factor_is_on(http: httpx.Client, pg_db: Engine) -> None:
    user = web_user(pg_db, "Alice")
    web_sign_in(http, user)
    with db.unit_of_work(db.make_session_factory(pg_db)) as session:
        owner = session.scalars(select(User).where(User.email == user.email)).one()
        secret = identity.enrol_totp_now(
            session=session, user=owner, settings=make_settings(pg_db).auth
        ).secret
    before = fingerprint(pg_db)
    refused = _add(http, password=user.password)
    assert refused.status_code == 401
    assert _alert(refused.text) == "Enter the 6-digit code from your authenticator app."
    assert 'id="otp"' in refused.text
    assert fingerprint(pg_db) == before
    done = _add(http, password=user.password, otp=pyotp.TOTP(secret).now())
    assert done.status_code == 303 and len(_addresses(pg_db)) == 1


def test_another_users_address_is_404(http: httpx.Client, live_url: str, pg_db: Engine) -> None:
    alice = web_user(pg_db, "Alice")
    web_sign_in(http, alice)
    assert _add(http, password=alice.password).status_code == 303
    (address,) = _addresses(pg_db)
    with new_client(live_url) as other:
        mallory = web_user(pg_db, "Mallory")
        web_sign_in(other, mallory)
        before = fingerprint(pg_db)
        token = csrf_token(other.get(PATH).text)
        response = other.post(
            f"{PATH}/{address.id}/remove",
            data={"csrf_token": token, "password": mallory.password},
        )
        assert response.status_code == 404
        assert _alert(response.text) == "That address is not in your address book."
        assert BTC_ADDRESS not in other.get(PATH).text
        assert fingerprint(pg_db) == before
    assert _addresses(pg_db)[0].removed_at is None
