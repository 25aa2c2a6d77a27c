"""The merchant portal over HTTP on PostgreSQL: signing in as a member (the chooser for
several merchants), each role's screens (a cashier cannot refund, export or see keys: 403),
another merchant's charge (404), refunds and the till's charges through the charge service
(once per form; a refusal changes nothing), terminal keys shown once and revoked, the webhook
and its secret rotation, people and roles, and CSRF on every portal form."""

from __future__ import annotations

import re

import pyotp
from fastapi.routing import APIRoute
from sqlalchemy import select
from sqlalchemy.engine import Engine

from strongroom import db
from strongroom.identity.api_keys import ApiKey
from strongroom.merchants.models import Charge, MerchantMember
from strongroom.web import merchant
from tests.api.conftest import PASSWORD

from .conftest import (
    assert_locked_down,
    csrf_token,
    fingerprint,
    new_client,
    web_sign_in,
    web_user,
)
from .merchant_support import charge, hire, payer, payment_code, portal_sign_in, shop

SCREENS = {
    "/merchant/": {"owner", "manager", "cashier", "finance"},
    "/merchant/pos": {"owner", "manager", "cashier"},
    "/merchant/export": {"owner", "manager", "finance"},
    "/merchant/export/charges.csv": {"owner", "manager", "finance"},
    "/merchant/keys": {"owner", "manager"},
    "/merchant/webhook": {"owner", "manager"},
    "/merchant/members": {"owner"},
}


def test_each_role_sees_its_screens_and_gets_403_for_the_others(
    live_url: str, pg_db: Engine
) -> None:
    merchant_id = shop(pg_db)
    charge_id = charge(pg_db, merchant_id, payer(pg_db).email)
    for role in ("owner", "manager", "cashier", "finance"):
        person = hire(pg_db, merchant_id, role)
        with new_client(live_url) as client:
            chosen = portal_sign_in(client, person)
            assert chosen.status_code == 303 and chosen.headers["location"] == "/merchant/"
            home = client.get("/merchant/")
            assert home.status_code == 200
            assert_locked_down(client, home)
            assert charge_id in home.text
            for path, allowed in SCREENS.items():
                response = client.get(path)
                expected = 200 if role in allowed else 403
                assert response.status_code == expected, (role, path, response.status_code)
                if expected == 403:
                    assert "Not for your role" in response.text
                elif path != "/merchant/export/charges.csv":
                    assert f'href="{path}"' in response.text  # in the navigation
            shown = client.get(f"/merchant/charges/{charge_id}")
            assert shown.status_code == 200
            assert ("/refund" in shown.text) is (role != "cashier")
            for path in set(SCREENS) - {"/merchant/export/charges.csv"}:
                assert (f'href="{path}"' in home.text) is (role in SCREENS[path]), (role, path)


def test_a_cashier_cannot_refund_and_nothing_moves(live_url: str, pg_db: Engine) -> None:
    merchant_id = shop(pg_db)
    charge_id = charge(pg_db, merchant_id, payer(pg_db).email)
    cashier = hire(pg_db, merchant_id, "cashier")
    with new_client(live_url) as client:
        portal_sign_in(client, cashier)
        token = csrf_token(client.get("/merchant/").text)
        before = fingerprint(pg_db)
        refused = client.post(
            f"/merchant/charges/{charge_id}/refund",
            data={"csrf_token": token, "amount": "10.00", "idempotency_key": "k" * 20},
        )
        assert refused.status_code == 403 and "Not for your role" in refused.text
        exported = client.get("/merchant/export/charges.csv")
        assert exported.status_code == 403 and charge_id not in exported.text
        keys = client.post("/merchant/keys", data={"csrf_token": token, "role": "owner"})
        assert keys.status_code == 403
        assert fingerprint(pg_db) == before


def test_another_merchant_s_charge_is_not_found(live_url: str, pg_db: Engine) -> None:
    ours, theirs = shop(pg_db), shop(pg_db, "Other Noodles")
    their_charge = charge(pg_db, theirs, payer(pg_db).email)
    owner = hire(pg_db, ours, "owner")
    with new_client(live_url) as client:
        portal_sign_in(client, owner)
        assert their_charge not in client.get("/merchant/").text
        assert client.get(f"/merchant/charges/{their_charge}").status_code == 404
        token = csrf_token(client.get("/merchant/").text)
        before = fingerprint(pg_db)
        refund = client.post(
            f"/merchant/charges/{their_charge}/refund",
            data={"csrf_token": token, "amount": "1.00", "idempotency_key": "k" * 20},
        )
        assert refund.status_code == 404
        assert client.get(f"/merchant/pos?paid={their_charge}").status_code == 404
        assert fingerprint(pg_db) == before
        assert their_charge not in client.get("/merchant/export/charges.csv").text


def _refundable(engine: Engine, charge_id: str) -> int:
    with db.make_session_factory(engine)() as session:
        row = session.scalars(select(Charge).where(Charge.id == charge_id)).one()
        return row.amount_minor - row.refunded_minor


def test_a_refund_once_per_form_and_a_refusal_changes_nothing(live_url: str, pg_db: Engine) -> None:
    merchant_id = shop(pg_db)
    charge_id = charge(pg_db, merchant_id, payer(pg_db).email, "100.00")
    finance = hire(pg_db, merchant_id, "finance")
    with new_client(live_url) as client:
        portal_sign_in(client, finance)
        page = client.get(f"/merchant/charges/{charge_id}").text
        key = re.search(r'name="idempotency_key" value="([^"]+)"', page)
        assert key is not None
        form = {"csrf_token": csrf_token(page), "amount": "40.00", "idempotency_key": key[1]}
        done = client.post(f"/merchant/charges/{charge_id}/refund", data=form)
        assert done.status_code == 303
        assert done.headers["location"] == f"/merchant/charges/{charge_id}?refunded=1"
        again = client.post(f"/merchant/charges/{charge_id}/refund", data=form)
        assert again.status_code == 303  # the same form: the stored outcome, no second refund
        assert _refundable(pg_db, charge_id) == 6000
        shown = client.get(done.headers["location"]).text
        assert "The refund was made." in shown and "Partly refunded" in shown
        before = fingerprint(pg_db)
        for amount, text in (
            ("60.01", "at most 60.00"),
            ("abc", "Enter an amount such as 12.50."),
            ("-1", "Enter an amount such as 12.50."),
            ("0.001", "Enter an amount such as 12.50."),
        ):
            refused = client.post(
                f"/merchant/charges/{charge_id}/refund",
                data={**form, "amount": amount, "idempotency_key": f"other-{amount}-key"},
            )
            assert refused.status_code == 422, (amount, refused.status_code)
            assert text in refused.text, amount
        reused = client.post(f"/merchant/charges/{charge_id}/refund", data={**form, "amount": "1"})
        assert reused.status_code == 409 and "already sent with other values" in reused.text
        assert fingerprint(pg_db) == before
        csv = client.get("/merchant/export/charges.csv")
        assert csv.status_code == 200 and csv.headers["content-type"].startswith("text/csv")
        assert csv.text.splitlines()[0].startswith("id,created_at,status")
        assert charge_id in csv.text and "partially_refunded" in csv.text


def test_the_till_charges_a_payment_code_once_and_announces_it(
    live_url: str, pg_db: Engine
) -> None:
    merchant_id = shop(pg_db)
    customer = payer(pg_db)
    cashier = hire(pg_db, merchant_id, "cashier")
    with new_client(live_url) as client:
        portal_sign_in(client, cashier)
        page = client.get("/merchant/pos")
        assert page.status_code == 200 and 'data-voice-lang="en"' in page.text
        assert_locked_down(client, page)
        key = re.search(r'name="idempotency_key" value="([^"]+)"', page.text)
        assert key is not None
        code = payment_code(pg_db, customer.email)
        form = {
            "csrf_token": csrf_token(page.text),
            "payment_code": code[:12] + " " + code[12:],
            "amount": "100.00",
            "idempotency_key": key[1],
        }
        done = client.post("/merchant/pos", data=form)
        assert done.status_code == 303, done.text
        assert (
            client.post("/merchant/pos", data=form).headers["location"] == done.headers["location"]
        )
        paid = client.get(done.headers["location"])
        assert 'data-announce="Payment received: 100.00 Hong Kong dollars"' in paid.text
        with db.make_session_factory(pg_db)() as session:
            rows = session.scalars(select(Charge).where(Charge.merchant_id == merchant_id)).all()
            assert [(r.amount_minor, r.actor) for r in rows] == [(10000, rows[0].actor)]
        before = fingerprint(pg_db)
        token = csrf_token(paid.text)
        for body, status, text in (
            ({"payment_code": code, "amount": "5.00"}, 409, "already used"),
            ({"payment_code": "1" * 24, "amount": "5.00"}, 422, "not valid"),
            ({"payment_code": code, "amount": "5.001"}, 422, "such as 12.50"),
            ({"payment_code": code, "amount": "0"}, 422, "such as 12.50"),
        ):
            refused = client.post(
                "/merchant/pos",
                data={
                    **body,
                    "csrf_token": token,
                    "idempotency_key": f"key-{status}-{len(text)}-{len(body['amount'])}",
                },
            )
            assert refused.status_code == status, (body, refused.status_code)
            assert text in refused.text, body
        assert fingerprint(pg_db) == before
    with new_client(live_url) as client:
        zh = client.get("/merchant/signin", headers={"Accept-Language": "zh-HK"})
        assert zh.status_code == 200 and 'lang="zh-Hant"' in zh.text


def test_terminal_keys_are_shown_once_and_revoked(live_url: str, pg_db: Engine) -> None:
    merchant_id = shop(pg_db)
    manager = hire(pg_db, merchant_id, "manager")
    with new_client(live_url) as client:
        portal_sign_in(client, manager)
        token = csrf_token(client.get("/merchant/keys").text)
        made = client.post(
            "/merchant/keys", data={"csrf_token": token, "name": "Till 1", "role": "cashier"}
        )
        assert made.status_code == 201
        key = re.search(r'id="new-key">([^<]+)<', made.text)
        assert key is not None
        api_key = key[1]
        listed = client.get("/merchant/keys").text
        assert "Till 1" in listed and api_key not in listed
        assert client.get("/v1/merchant/charges", headers={"X-Api-Key": api_key}).status_code == 200
        owner_key = client.post(
            "/merchant/keys", data={"csrf_token": token, "name": "Boss", "role": "owner"}
        )
        assert owner_key.status_code == 403  # a manager cannot make an owner's key
        key_id = re.search(r'data-key="(key_[0-9a-f]{16})"', listed)
        assert key_id is not None
        revoked = client.post(f"/merchant/keys/{key_id[1]}/revoke", data={"csrf_token": token})
        assert revoked.status_code == 303
        assert client.get("/v1/merchant/charges", headers={"X-Api-Key": api_key}).status_code == 401
        other = shop(pg_db, "Other Noodles")
        with db.unit_of_work(db.make_session_factory(pg_db)) as session:
            assert session.get(ApiKey, key_id[1]) is not None
        other_owner = hire(pg_db, other, "owner")
        with new_client(live_url) as stranger:
            portal_sign_in(stranger, other_owner)
            t = csrf_token(stranger.get("/merchant/keys").text)
            assert (
                stranger.post(
                    f"/merchant/keys/{key_id[1]}/revoke", data={"csrf_token": t}
                ).status_code
                == 404
            )


def test_webhook_url_and_secret_rotation(live_url: str, pg_db: Engine) -> None:
    merchant_id = shop(pg_db)
    owner = hire(pg_db, merchant_id, "owner")
    with new_client(live_url) as client:
        portal_sign_in(client, owner)
        page = client.get("/merchant/webhook").text
        secret = re.search(r'id="webhook-secret">([^<]+)<', page)
        assert secret is not None
        form = {"csrf_token": csrf_token(page), "url": "https://shop.example/hooks"}
        assert client.post("/merchant/webhook", data=form).status_code == 303
        kept = client.get("/merchant/webhook").text
        assert "https://shop.example/hooks" in kept and secret[1] in kept
        assert client.post("/merchant/webhook", data={**form, "rotate": "true"}).status_code == 303
        assert secret[1] not in client.get("/merchant/webhook").text
        before = fingerprint(pg_db)
        bad = client.post("/merchant/webhook", data={**form, "url": "ftp://x"})
        assert bad.status_code == 422
        assert fingerprint(pg_db) == before


def test_an_owner_manages_people_and_roles(live_url: str, pg_db: Engine) -> None:
    merchant_id = shop(pg_db)
    owner = hire(pg_db, merchant_id, "owner")
    newcomer = web_user(pg_db, "Newcomer")
    with new_client(live_url) as client:
        portal_sign_in(client, owner)
        token = csrf_token(client.get("/merchant/members").text)
        added = client.post(
            "/merchant/members",
            data={"csrf_token": token, "email": newcomer.email, "role": "cashier"},
        )
        assert added.status_code == 303
        with db.make_session_factory(pg_db)() as session:
            rows = session.scalars(
                select(MerchantMember).where(MerchantMember.merchant_id == merchant_id)
            ).all()
            roles = sorted(r.role for r in rows)
            newcomer_id = next(r.user_id for r in rows if r.role == "cashier")
            owner_id = next(r.user_id for r in rows if r.role == "owner")
        assert roles == ["cashier", "owner"]
        before = fingerprint(pg_db)
        nobody = client.post(
            "/merchant/members",
            data={"csrf_token": token, "email": "nobody@example.com", "role": "cashier"},
        )
        assert nobody.status_code == 404 and "no Strongroom account" in nobody.text
        self_demote = client.post(
            "/merchant/members", data={"csrf_token": token, "email": owner.email, "role": "cashier"}
        )
        assert self_demote.status_code == 409
        self_remove = client.post(
            f"/merchant/members/{owner_id}/remove", data={"csrf_token": token}
        )
        assert self_remove.status_code == 409
        assert fingerprint(pg_db) == before
        with new_client(live_url) as cashier_client:
            portal_sign_in(cashier_client, newcomer)
            assert cashier_client.get("/merchant/pos").status_code == 200
            gone = client.post(
                f"/merchant/members/{newcomer_id}/remove", data={"csrf_token": token}
            )
            assert gone.status_code == 303
            assert cashier_client.get("/merchant/pos").status_code == 403


def test_several_merchants_choose_one_and_strangers_are_refused(
    live_url: str, pg_db: Engine
) -> None:
    first, second = shop(pg_db, "Alpha Cafe"), shop(pg_db, "Beta Bakery")
    person = hire(pg_db, first, "owner")
    hire(pg_db, second, "cashier", person)
    their_charge = charge(pg_db, second, payer(pg_db).email)
    with new_client(live_url) as client:
        chooser = portal_sign_in(client, person)
        assert chooser.status_code == 200
        assert "Alpha Cafe" in chooser.text and "Beta Bakery" in chooser.text
        unchosen = client.get("/merchant/")
        assert unchosen.status_code == 409 and 'href="/merchant/choose"' in unchosen.text
        token = csrf_token(chooser.text)
        picked = client.post("/merchant/choose", data={"csrf_token": token, "merchant_id": second})
        assert picked.status_code == 303
        home = client.get("/merchant/")
        assert their_charge in home.text and "Beta Bakery" in home.text
        assert client.get("/merchant/members").status_code == 403  # a cashier there
        stranger_shop = shop(pg_db, "Gamma Grill")
        refused = client.post(
            "/merchant/choose", data={"csrf_token": token, "merchant_id": stranger_shop}
        )
        assert refused.status_code == 403
    outsider = web_user(pg_db, "Outsider")
    with new_client(live_url) as client:
        token = csrf_token(client.get("/merchant/signin").text)
        client.post(
            "/merchant/signin",
            data={"csrf_token": token, "email": outsider.email, "password": PASSWORD},
        )
        refused = client.get("/merchant/choose")
        assert refused.status_code == 403 and "does not work for a merchant" in refused.text
        assert client.get("/merchant/").status_code == 403
    with new_client(live_url) as client:
        away = client.get("/merchant/pos")
        assert away.status_code == 303
        assert away.headers["location"] == "/merchant/signin?next=/merchant/pos"


def test_every_portal_form_refuses_a_missing_or_wrong_csrf_token(
    live_url: str, pg_db: Engine
) -> None:
    merchant_id = shop(pg_db)
    owner = hire(pg_db, merchant_id, "owner")
    charge_id = charge(pg_db, merchant_id, payer(pg_db).email)
    with new_client(live_url) as client:
        portal_sign_in(client, owner)
        right = csrf_token(client.get("/merchant/").text)
        with new_client(live_url) as stranger:
            foreign = csrf_token(stranger.get("/merchant/signin").text)
        routes = sorted(
            route.path
            for screen in merchant.SCREENS
            for route in screen.routes
            if isinstance(route, APIRoute) and "POST" in (route.methods or ())
        )
        assert len(routes) >= 10
        form = {
            "email": owner.email,
            "password": PASSWORD,
            "otp": "123456",
            "merchant_id": merchant_id,
            "amount": "1.00",
            "payment_code": "1" * 24,
            "idempotency_key": "k" * 20,
            "role": "cashier",
            "url": "https://shop.example/hooks",
        }
        paths = {
            "/merchant/charges/{charge_id}/refund": f"/merchant/charges/{charge_id}/refund",
            "/merchant/keys/{key_id}/revoke": "/merchant/keys/key_0123456789abcdef/revoke",
            "/merchant/members/{user_id}/remove": "/merchant/members/u_nobody/remove",
        }
        before = fingerprint(pg_db)
        for route in routes:
            path = paths.get(route, route)
            for token in (None, "", "wrong", foreign, right + "x"):
                data = form if token is None else {**form, "csrf_token": token}
                response = client.post(path, data=data)
                assert response.status_code == 403, (path, token)
                assert "This form has expired" in response.text
        assert fingerprint(pg_db) == before
        assert client.post("/merchant/signout", data={"csrf_token": right}).status_code == 303
        assert client.get("/merchant/").status_code == 303


def test_the_payer_s_history_and_receipt_name_the_shop(live_url: str, pg_db: Engine) -> None:
    merchant_id = shop(pg_db, "Lucky Tea House")
    customer = payer(pg_db)
    charge_id = charge(pg_db, merchant_id, customer.email, "12.50")
    with new_client(live_url) as client:
        web_sign_in(client, customer)
        history = client.get("/app/history")
        assert history.status_code == 200
        assert "Paid to Lucky Tea House" in history.text
        receipt = client.get(f"/app/receipts/{charge_id}.pay")
        assert receipt.status_code == 200 and "Paid to Lucky Tea House" in receipt.text
        zh = client.get("/app/history", headers={"Accept-Language": "zh-HK"})
        assert "付款給 Lucky Tea House" in zh.text


def test_two_step_sign_in_and_the_language_switch_come_back_to_the_portal(
    live_url: str, pg_db: Engine
) -> None:
    merchant_id = shop(pg_db)
    person = web_user(pg_db, "Secure", two_factor=True)
    hire(pg_db, merchant_id, "manager", person)
    assert person.totp_secret is not None
    with new_client(live_url) as client:
        token = csrf_token(client.get("/merchant/signin?next=/merchant/keys").text)
        step = client.post(
            "/merchant/signin?next=/merchant/keys",
            data={"csrf_token": token, "email": person.email, "password": PASSWORD},
        )
        assert step.status_code == 303
        assert step.headers["location"].startswith("/merchant/signin/code")
        code_page = client.get(step.headers["location"])
        assert code_page.status_code == 200
        # the Lite app's code step does not complete the portal's pending sign-in
        lite = client.post(
            "/app/signin/code",
            data={
                "csrf_token": csrf_token(code_page.text),
                "otp": pyotp.TOTP(person.totp_secret).now(),
            },
        )
        assert lite.status_code in (303, 200) and "sr_session" not in client.cookies
        done = client.post(
            step.headers["location"],
            data={
                "csrf_token": csrf_token(code_page.text),
                "otp": pyotp.TOTP(person.totp_secret).now(),
            },
        )
        assert done.status_code == 303 and done.headers["location"] == "/merchant/keys"
        keys = client.get("/merchant/keys")
        assert keys.status_code == 200
        switched = client.post(
            "/app/language",
            data={"csrf_token": csrf_token(keys.text), "lang": "zh_Hant", "next": "/merchant/keys"},
        )
        assert switched.status_code == 303 and switched.headers["location"] == "/merchant/keys"
        assert "終端金鑰" in client.get("/merchant/keys").text
