"""The Lite app's shop screens over HTTP (issue #13), against the live server on PostgreSQL:
paying a shop's EMV code (R-CODE-2) once per confirmation whatever the number of submits, with
the exact legs of the worked example (HK$100.00 at 80 bps), a dynamic code paid once, a
cross-border payment priced in the payer's currency (R-XB-1), every refusal shown in the page
with nothing moved; the receipts of shop payments with their refunds, the owner's only."""

from __future__ import annotations

import re
from collections.abc import Iterator
from html import unescape

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from strongroom import db
from strongroom.fx import service as fx
from strongroom.identity import service as identity
from strongroom.ledger import reports
from strongroom.merchants import charges
from strongroom.merchants import service as merchants
from strongroom.merchants.models import Charge
from tests.api.conftest import make_settings
from tests.api.merchant_support import fee_balance, merchant_balance

from .conftest import (
    csrf_token,
    fingerprint,
    new_client,
    sandbox_topup,
    web_sign_in,
    web_user,
)
from .console_support import make_operator
from .merchant_support import charge, payer, shop

KEY_FIELD = re.compile(r'name="idempotency_key" value="([^"]+)"')
FPS_VECTOR = (  # SPEC R-CODE-2's test vector: a Hong Kong FPS code, not a shop of this wallet
    "00020101021226330012hk.com.hkicl0313+852-6789123452040000530334454031005802HK5914"
    "company_1_data6002HK62170513INV/TEST/00016304A154"
)


@pytest.fixture(autouse=True)
def ledger_checked(pg_db: Engine) -> Iterator[None]:
    yield
    with db.make_session_factory(pg_db)() as session:
        report = reports.check(session=session)
    assert report.ok, report.problems


def shop_code(engine: Engine, merchant_id: str, amount: str | None = None) -> str:
    """The shop's QR payload, as ``POST /v1/merchant/qr`` makes it: static without an amount,
    dynamic (paid once) with one."""
    settings = make_settings(engine)
    with db.unit_of_work(db.make_session_factory(engine)) as session:
        payload: str = charges.qr_payload(
            session=session,
            merchant=merchants.get(session=session, merchant_id=merchant_id),
            settings=settings,
            assets=settings.asset_registry(),
            amount=amount,
            asset=None,
        )
    return payload


def _wallet(engine: Engine, email: str, asset: str = "HKD") -> int:
    with db.make_session_factory(engine)() as session:
        from strongroom.ledger import service as ledger

        user = identity.find_user(session=session, reference=email)
        assert user is not None
        found = ledger.user_wallet_id_if_any(session=session, user_id=user.id, asset=asset)
        return 0 if found is None else ledger.balance(session=session, account_id=found).total_minor


def _charges(engine: Engine) -> int:
    with db.make_session_factory(engine)() as session:
        return session.scalar(select(func.count()).select_from(Charge)) or 0


def _alert(html: str) -> str:
    found = re.search(r'<p class="alert" role="alert">(.*?)</p>', html, re.S)
    assert found is not None, "no alert on the page"
    return unescape(found.group(1))


def _title(html: str) -> str:
    found = re.search(r"<title>(.*?)</title>", html, re.S)
    assert found is not None
    return found.group(1).strip()


def _text(html: str) -> str:
    return unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html)))


def _check(http: httpx.Client, payload: str, amount: str | None = None) -> httpx.Response:
    """Step 1 → 2: paste the code (and type a static code's amount)."""
    token = csrf_token(http.get("/app/pay/emv").text)
    form = {"csrf_token": token, "payload": payload}
    if amount is not None:
        form["amount"] = amount
    return http.post("/app/pay/emv", data=form)


def _pay_form(confirmation: httpx.Response) -> dict[str, str]:
    """The hidden fields of the confirmation's "Pay" form."""
    assert confirmation.status_code == 200, confirmation.text
    form = re.search(
        r'<form method="post" action="/app/pay/emv/confirm".*?</form>', confirmation.text, re.S
    )
    assert form is not None, "no Pay button on the confirmation"
    fields = dict(re.findall(r'name="([a-z_]+)" value="([^"]*)"', form.group(0)))
    return {name: unescape(value) for name, value in fields.items()}


def _signed_in_payer(http: httpx.Client, engine: Engine, amount: str = "500.00") -> str:
    person = payer(engine, amount)
    web_sign_in(http, person)
    return person.email


# --------------------------------------------------------------------------- paying a code


def test_a_static_code_pays_the_typed_amount_once_with_the_fee_leg(
    http: httpx.Client, pg_db: Engine
) -> None:
    email = _signed_in_payer(http, pg_db, "150.00")
    merchant_id = shop(pg_db)
    payload = shop_code(pg_db, merchant_id)
    asked = _check(http, payload)
    assert asked.status_code == 200
    assert "Lucky Tea House" in asked.text and 'name="amount"' in asked.text
    assert "/app/pay/emv/confirm" not in asked.text  # no Pay button before the amount
    confirmation = _check(http, payload, "100.00")
    shown = _text(confirmation.text)
    assert "Lucky Tea House" in shown and "100.00 HKD" in shown
    assert "You pay" not in shown  # same currency: nothing to convert
    form = _pay_form(confirmation)
    assert form["payload"] == payload and form["amount"] == "100.00"
    first = http.post("/app/pay/emv/confirm", data=form)
    again = http.post("/app/pay/emv/confirm", data=form)  # a double click, or a refresh
    assert first.status_code == again.status_code == 303
    assert first.headers["location"] == again.headers["location"]
    assert first.headers["location"].startswith("/app/receipts/ch_")
    assert _charges(pg_db) == 1
    assert _wallet(pg_db, email) == 50_00
    assert merchant_balance(pg_db, merchant_id) == 99_20
    assert fee_balance(pg_db) == 80
    receipt = http.get(first.headers["location"])
    text = _text(receipt.text)
    assert receipt.status_code == 200
    assert "Paid to Lucky Tea House" in text and "\u2212100.00 HKD" in text
    assert "No refund so far." in text
    assert "0.80" not in text and "99.20" not in text  # the shop's fee is not the payer's
    # the same key with another amount is refused and pays nothing more
    changed = http.post("/app/pay/emv/confirm", data={**form, "amount": "1.00"})
    assert changed.status_code == 409
    assert "already sent with other values" in _alert(changed.text)
    assert _charges(pg_db) == 1 and _wallet(pg_db, email) == 50_00


def test_a_dynamic_code_carries_its_amount_and_is_paid_once(
    http: httpx.Client, pg_db: Engine
) -> None:
    email = _signed_in_payer(http, pg_db, "20.00")
    merchant_id = shop(pg_db)
    payload = shop_code(pg_db, merchant_id, "8.50")
    confirmation = _check(http, payload)
    assert "8.50 HKD" in _text(confirmation.text)
    assert 'name="amount"' not in confirmation.text  # the code fixes it
    form = _pay_form(confirmation)
    assert "amount" not in form
    paid = http.post("/app/pay/emv/confirm", data=form)
    assert paid.status_code == 303
    assert _wallet(pg_db, email) == 11_50 and merchant_balance(pg_db, merchant_id) == 8_44
    # the same code again: refused when read, and when paid with a fresh confirmation's key
    used = _check(http, payload)
    assert used.status_code == 409
    assert "paid already" in _alert(used.text)
    before = fingerprint(pg_db)
    second = http.post("/app/pay/emv/confirm", data={**form, "idempotency_key": "another-key-1"})
    assert second.status_code == 409 and "paid already" in _alert(second.text)
    assert fingerprint(pg_db) == before
    assert _charges(pg_db) == 1 and _wallet(pg_db, email) == 11_50


def test_broken_foreign_and_unpayable_codes_are_refused_in_the_page(
    http: httpx.Client, pg_db: Engine
) -> None:
    email = _signed_in_payer(http, pg_db, "10.00")
    merchant_id = shop(pg_db)
    payload = shop_code(pg_db, merchant_id)
    corrupted = payload[:-4] + ("0000" if payload[-4:] != "0000" else "1111")
    before = fingerprint(pg_db)
    cases = [
        (corrupted, None, 422, "check digits do not match"),
        (payload[:-8], None, 422, "its check digits are missing"),
        ("hello", None, 422, "not a payment code we can read"),
        (FPS_VECTOR, None, 422, "not from a shop that takes Strongroom"),
        (payload, "1.234", 422, "at most 2 decimal places"),
        (payload, "-5", 422, "greater than zero"),
    ]
    for code, amount, status, message in cases:
        checked = _check(http, code, amount)
        assert checked.status_code == status, (code, amount, checked.text)
        assert message in _alert(checked.text), (code, amount)
        # the pasted text is kept in the form, to correct it; a refused amount of a code that
        # reads fine is shown in the amount's own field
        assert unescape(code) in unescape(checked.text)
        if amount is not None:
            assert 'id="amount" name="amount"' in checked.text
            assert f'value="{amount}"' in checked.text
    # paying straight away (a form crafted without the check step) is refused the same way
    token = csrf_token(http.get("/app/pay/emv").text)
    for code, amount, status, message in cases:
        form = {"csrf_token": token, "payload": code, "idempotency_key": f"key-{len(code)}"}
        if amount is not None:
            form["amount"] = amount
        paid = http.post("/app/pay/emv/confirm", data=form)
        assert paid.status_code == status, (code, amount, paid.text)
        assert message in _alert(paid.text)
    # the funds are checked when paying (the confirmation shows the price, not the balance)
    poor = http.post(
        "/app/pay/emv/confirm",
        data={
            "csrf_token": token,
            "payload": payload,
            "amount": "100.00",
            "idempotency_key": "k-p",
        },
    )
    assert poor.status_code == 422
    assert "Not enough money: you have 10.00 HKD available." in _alert(poor.text)
    no_amount = http.post(
        "/app/pay/emv/confirm",
        data={"csrf_token": token, "payload": payload, "idempotency_key": "k-none"},
    )
    assert no_amount.status_code == 422 and "Enter the amount to pay." in _alert(no_amount.text)
    assert fingerprint(pg_db) == before
    assert _wallet(pg_db, email) == 10_00 and _charges(pg_db) == 0


def test_refusals_are_in_the_user_s_language(http: httpx.Client, pg_db: Engine) -> None:
    _signed_in_payer(http, pg_db)
    token = csrf_token(http.get("/app/").text)
    http.post("/app/language", data={"csrf_token": token, "lang": "zh_Hant", "next": "/app/"})
    payload = shop_code(pg_db, shop(pg_db))
    corrupted = payload[:-4] + ("0000" if payload[-4:] != "0000" else "1111")
    checked = _check(http, corrupted)
    assert "檢查碼不符" in _alert(checked.text)
    assert "付款給商戶二維碼" in http.get("/app/pay/emv").text


def test_an_unverified_email_cannot_pay(http: httpx.Client, pg_db: Engine) -> None:
    person = web_user(pg_db, "Una", verified=False)
    web_sign_in(http, person)
    payload = shop_code(pg_db, shop(pg_db), "5.00")
    form = _pay_form(_check(http, payload))
    before = fingerprint(pg_db)
    refused = http.post("/app/pay/emv/confirm", data=form)
    assert refused.status_code == 403
    assert "Confirm your email address first" in _alert(refused.text)
    assert fingerprint(pg_db) == before


def test_a_suspended_shop_cannot_be_paid(http: httpx.Client, pg_db: Engine) -> None:
    _signed_in_payer(http, pg_db)
    merchant_id = shop(pg_db)
    payload = shop_code(pg_db, merchant_id)
    with db.unit_of_work(db.make_session_factory(pg_db)) as session:
        merchants.get(session=session, merchant_id=merchant_id).status = "suspended"
    checked = _check(http, payload, "5.00")
    assert checked.status_code == 403
    assert "cannot take payments at the moment" in _alert(checked.text)


def test_cross_border_shows_and_pays_the_payer_s_currency_at_the_live_rate(
    http: httpx.Client, pg_db: Engine
) -> None:
    operator = make_operator(pg_db)
    settings = make_settings(pg_db)
    registry = settings.asset_registry()
    with db.unit_of_work(db.make_session_factory(pg_db)) as session:
        fx.set_rate(
            session=session,
            operator=identity.find_user(session=session, reference=operator.email),  # type: ignore[arg-type]
            base=registry.get("HKD"),
            quote=registry.get("CNY"),
            mid="0.9",
            spread_bps=0,
            settings=settings.fx,
        )
    email = _signed_in_payer(http, pg_db, "200.00")  # an HK wallet: pays in HKD
    merchant_id = shop(pg_db, "Shenzhen Noodles", region="CN")
    confirmation = _check(http, shop_code(pg_db, merchant_id, "90.00"))
    shown = _text(confirmation.text)
    assert "90.00 CNY" in shown and "You pay 100.00 HKD" in shown
    paid = http.post("/app/pay/emv/confirm", data=_pay_form(confirmation))
    assert paid.status_code == 303
    assert _wallet(pg_db, email) == 100_00
    assert merchant_balance(pg_db, merchant_id, "CNY") == 90_00 - 72
    receipt = _text(http.get(paid.headers["location"]).text)
    assert "Paid to Shenzhen Noodles" in receipt and "\u2212100.00 HKD" in receipt
    assert "Charged by the shop 90.00 CNY" in receipt
    # the history names the shop too, though the payer's leg goes to the FX account
    assert "Paid to Shenzhen Noodles" in _text(http.get("/app/history").text)


def test_signed_out_operators_and_missing_csrf_are_refused(
    http: httpx.Client, live_url: str, pg_db: Engine
) -> None:
    for path in ("/app/pay/emv", "/app/cards"):
        answer = http.get(path)
        assert answer.status_code == 303 and answer.headers["location"].startswith("/app/signin")
    email = _signed_in_payer(http, pg_db)
    payload = shop_code(pg_db, shop(pg_db))
    before = fingerprint(pg_db)
    for path in ("/app/pay/emv", "/app/pay/emv/confirm", "/app/cards", "/app/cards/suspend"):
        form = {"payload": payload, "amount": "5.00", "idempotency_key": "csrf-key", "card_id": "x"}
        refused = http.post(path, data=form)
        assert refused.status_code == 403, path
        assert "This form has expired" in refused.text
    assert fingerprint(pg_db) == before and _wallet(pg_db, email) == 500_00
    operator = make_operator(pg_db, two_factor=False)
    with new_client(live_url) as desk:
        web_sign_in(desk, operator)
        before = fingerprint(pg_db)
        for path in ("/app/cards", "/app/pay/emv"):
            assert desk.get(path).status_code == 403, path
        token = csrf_token(desk.get("/app/").text)
        made = desk.post("/app/cards", data={"csrf_token": token})
        assert made.status_code == 403
        paid = desk.post(
            "/app/pay/emv/confirm",
            data={
                "csrf_token": token,
                "payload": payload,
                "amount": "5.00",
                "idempotency_key": "op-1",
            },
        )
        assert paid.status_code == 403
        assert fingerprint(pg_db) == before


# --------------------------------------------------------------------------- receipts


def test_a_receipt_lists_the_refunds_and_is_its_payer_s_only(
    http: httpx.Client, live_url: str, pg_db: Engine
) -> None:
    email = _signed_in_payer(http, pg_db, "200.00")
    merchant_id = shop(pg_db)
    charge_id = charge(pg_db, merchant_id, email, "100.00")
    settings = make_settings(pg_db)
    with db.unit_of_work(db.make_session_factory(pg_db)) as session:
        refund = charges.refund(
            session=session,
            merchant=merchants.get(session=session, merchant_id=merchant_id),
            charge_id=charge_id,
            amount="40.00",
            settings=settings,
            assets=settings.asset_registry(),
            actor="test",
        )
        refund_transfer = refund.transfer_id
    history = http.get("/app/history").text
    assert f"/app/receipts/{charge_id}.pay" in history
    receipt = http.get(f"/app/receipts/{charge_id}.pay")
    text = _text(receipt.text)
    assert receipt.status_code == 200
    assert "Paid to Lucky Tea House" in text and "\u2212100.00 HKD" in text
    assert f"{charge_id}.pay" in text  # the reference
    assert "+40.00 HKD on" in text
    assert f'href="/app/receipts/{refund_transfer}"' in receipt.text
    returned = http.get(f"/app/receipts/{refund_transfer}")
    assert "Refund from Lucky Tea House" in _text(returned.text)
    assert f'href="/app/receipts/{charge_id}.pay"' in returned.text
    # another user: the same 404 page as for a receipt that does not exist
    with new_client(live_url) as other:
        web_sign_in(other, web_user(pg_db, "Mallory"))
        for path in (f"/app/receipts/{charge_id}.pay", f"/app/receipts/{refund_transfer}"):
            stranger = other.get(path)
            assert stranger.status_code == 404
            assert "Lucky Tea House" not in stranger.text and "100.00" not in stranger.text
        missing = other.get("/app/receipts/ch_0000000000000000000000000000.pay")
        assert missing.status_code == 404
        assert _title(missing.text) == _title(stranger.text)
    sandbox_topup(pg_db, email, "1.00")  # a top-up's receipt has no shop part
    topup = http.get("/app/history").text
    assert "Refunds" not in _text(
        http.get(re.findall(r'href="(/app/receipts/[^"]+)"', topup)[0]).text
    )
