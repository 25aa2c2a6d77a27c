"""The portal's settlements and batch payouts over HTTP on PostgreSQL (issue #13, item 1):
each role's screens (settlements for everyone, the report for the roles with ``export``,
payouts for owner and finance: the others get "Not for your role"); a day's settlement with
its gross, fees, refunds, net and payout; a payout file checked row by row with nothing
stored, refused as a whole when one row is bad (wrong header, bad amount, bad bank account,
duplicate reference, too many rows, more than the wallet holds), confirmed once per form, paid
by the worker's run and its result downloaded; another merchant's settlement and batch are
404; CSRF on the new forms; a suspended shop's portal says so."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import httpx
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from strongroom import db
from strongroom.merchants import service as merchants
from strongroom.settlement import batch_payouts
from strongroom.settlement import service as settlement
from strongroom.settlement.models import PayoutBatch, Settlement
from tests.api.conftest import make_settings

from .conftest import assert_locked_down, csrf_token, fingerprint, new_client
from .console_support import make_operator
from .merchant_support import _user, charge, hire, payer, portal_sign_in, shop

HEADER = "reference,holder_name,bank_code,account_number,asset,amount\n"
GOOD = HEADER + (
    "sup-1,Tea Leaf Supplier Ltd,004,123456780,HKD,30.00\n"
    "staff-7,Chan Tai Man,024,998877665,HKD,12.50\n"
)
SCREENS = {
    "/merchant/settlements": {"owner", "manager", "cashier", "finance"},
    "/merchant/payouts": {"owner", "finance"},
}


def _settle(engine: Engine) -> None:
    settings = make_settings(engine)
    now = db.utcnow()
    settlement.settle(
        db.make_session_factory(engine),
        settings.settlement,
        settings.asset_registry(),
        day=settlement.local_day(now, settings.settlement.timezone),
        now=now + timedelta(days=2),
    )


def _settlement_id(engine: Engine, merchant_id: str) -> str:
    with db.make_session_factory(engine)() as session:
        found: str = session.scalars(
            select(Settlement.id).where(Settlement.merchant_id == merchant_id)
        ).one()
    return found


def _batches(engine: Engine) -> int:
    with engine.connect() as connection:
        return connection.execute(select(func.count()).select_from(PayoutBatch)).scalar_one()


def _upload(client: httpx.Client, text: str | bytes) -> httpx.Response:
    token = csrf_token(client.get("/merchant/payouts").text)
    data = text.encode() if isinstance(text, str) else text
    return client.post(
        "/merchant/payouts/check",
        data={"csrf_token": token},
        files={"file": ("payouts.csv", data, "text/csv")},
    )


def test_each_role_sees_settlements_and_only_owner_and_finance_pay_out(
    live_url: str, pg_db: Engine
) -> None:
    merchant_id = shop(pg_db)
    charge(pg_db, merchant_id, payer(pg_db).email, "100.00")
    _settle(pg_db)
    settlement_id = _settlement_id(pg_db, merchant_id)
    for role in ("owner", "manager", "cashier", "finance"):
        person = hire(pg_db, merchant_id, role)
        with new_client(live_url) as client:
            portal_sign_in(client, person)
            home = client.get("/merchant/")
            for path, allowed in SCREENS.items():
                response = client.get(path)
                assert response.status_code == (200 if role in allowed else 403), (role, path)
                if role in allowed:
                    assert_locked_down(client, response)
                else:
                    assert "Not for your role" in response.text
                assert (f'href="{path}"' in home.text) is (role in allowed), (role, path)
            detail = client.get(f"/merchant/settlements/{settlement_id}")
            assert detail.status_code == 200
            report = client.get(f"/merchant/settlements/{settlement_id}/report.csv")
            exports = role != "cashier"
            assert report.status_code == (200 if exports else 403), role
            assert (f"/merchant/settlements/{settlement_id}/report.csv" in detail.text) is exports
            if not exports:
                assert "Not for your role" in report.text
            for path in ("/merchant/payouts/check", "/merchant/payouts"):
                token = csrf_token(home.text)
                before = fingerprint(pg_db)
                posted = client.post(
                    path,
                    data={"csrf_token": token, "payout_file": GOOD, "idempotency_key": "k" * 20},
                    files={"file": ("p.csv", GOOD.encode(), "text/csv")}
                    if path.endswith("check")
                    else None,
                )
                if role not in SCREENS["/merchant/payouts"]:
                    assert posted.status_code == 403 and "Not for your role" in posted.text
                    assert fingerprint(pg_db) == before


def test_a_settlement_shows_gross_fees_refunds_net_and_the_payout(
    live_url: str, pg_db: Engine
) -> None:
    merchant_id = shop(pg_db)
    someone = payer(pg_db)
    charge(pg_db, merchant_id, someone.email, "100.00")
    charge(pg_db, merchant_id, someone.email, "50.00")
    owner = hire(pg_db, merchant_id, "owner")
    with new_client(live_url) as client:
        portal_sign_in(client, owner)
        empty = client.get("/merchant/settlements")
        assert empty.status_code == 200 and "No settlements yet" in empty.text
        _settle(pg_db)
        settlement_id = _settlement_id(pg_db, merchant_id)
        listed = client.get("/merchant/settlements").text
        row = listed[listed.index(f'data-settlement="{settlement_id}"') :]
        row = row[: row.index("</tr>")]
        # 150.00 at 80 bps: 1.20 fees, net 148.80, all of it paid out by the sandbox bank
        for figure in ("HKD 150.00", "1.20", "148.80", "Paid out"):
            assert figure in row, (figure, row)
        detail = client.get(f"/merchant/settlements/{settlement_id}").text
        assert "HKD 148.80" in detail and "Paid out" in detail
        report = client.get(f"/merchant/settlements/{settlement_id}/report.csv")
        assert report.status_code == 200 and report.headers["content-type"].startswith("text/csv")
        lines = list(csv.reader(io.StringIO(report.text)))
        assert lines[0] == list(settlement.REPORT_HEADER)
        assert ["net", settlement_id, "", "", "", "148.80"] in lines
        zh = client.get("/merchant/settlements", headers={"Accept-Language": "zh-Hant"})
        assert zh.status_code == 200 and "148.80" in zh.text
        # another merchant's settlement: 404, as in the API
        other = shop(pg_db, "Other Noodles")
        charge(pg_db, other, someone.email, "10.00")
        _settle(pg_db)
        theirs = _settlement_id(pg_db, other)
        assert client.get(f"/merchant/settlements/{theirs}").status_code == 404
        assert client.get(f"/merchant/settlements/{theirs}/report.csv").status_code == 404
        assert client.get("/merchant/settlements/nope").status_code == 422  # not an id


def test_a_good_file_is_checked_confirmed_once_paid_and_its_result_downloaded(
    live_url: str, pg_db: Engine
) -> None:
    merchant_id = shop(pg_db)
    charge(pg_db, merchant_id, payer(pg_db).email, "100.00")  # 99.20 in the wallet
    finance = hire(pg_db, merchant_id, "finance")
    with new_client(live_url) as client:
        portal_sign_in(client, finance)
        before = fingerprint(pg_db)
        checked = _upload(client, GOOD)
        assert checked.status_code == 200, checked.text
        assert fingerprint(pg_db) == before  # checking stores nothing
        assert_locked_down(client, checked)
        rows = checked.text[checked.text.index("<tbody>") :]
        for text in ("sup-1", "staff-7", "Chan Tai Man", "998877665", "HKD 12.50", "HKD 42.50"):
            assert text in rows, text  # the full account numbers, to confirm who is paid
        token = csrf_token(checked.text)
        key = checked.text.split('name="idempotency_key" value="')[1].split('"')[0]
        form = {"csrf_token": token, "idempotency_key": key, "payout_file": GOOD}
        confirmed = client.post("/merchant/payouts", data=form)
        assert confirmed.status_code == 303, confirmed.text
        target = confirmed.headers["location"]
        assert target.startswith("/merchant/payouts/pb_")
        again = client.post("/merchant/payouts", data=form)  # a double click: one batch
        assert again.status_code == 303 and again.headers["location"] == target
        assert _batches(pg_db) == 1
        waiting = client.get(target)
        assert waiting.status_code == 200 and "Waiting to be paid" in waiting.text
        batch_id = target.rsplit("/", 1)[1]
        settings = make_settings(pg_db)
        ran = batch_payouts.run_batch(
            db.make_session_factory(pg_db), settings.asset_registry(), batch_id=batch_id
        )
        assert (ran.status, ran.paid, ran.failed) == ("completed", 2, 0)
        done = client.get(target).text
        assert "Done" in done and 'data-status="paid"' in done
        assert "····7665" in done and "998877665" not in done  # masked once stored
        assert "Waiting to be paid" not in done
        listed = client.get("/merchant/payouts").text
        assert batch_id in listed and "HKD 56.70" in listed  # 99.20 - 42.50 left
        result = client.get(f"{target}/result.csv")
        assert result.status_code == 200 and result.headers["content-type"].startswith("text/csv")
        outcome = list(csv.DictReader(io.StringIO(result.text)))
        assert [(r["reference"], r["status"]) for r in outcome] == [
            ("sup-1", "paid"),
            ("staff-7", "paid"),
        ]
        # another merchant's people cannot see it
        other_owner = hire(pg_db, shop(pg_db, "Other Noodles"), "owner")
        with new_client(live_url) as stranger:
            portal_sign_in(stranger, other_owner)
            assert stranger.get(target).status_code == 404
            assert stranger.get(f"{target}/result.csv").status_code == 404


BAD_FILES: dict[str, tuple[str | bytes, str | None, str | None]] = {
    "wrong header": (
        "ref,name,bank,account,currency,amount\nsup-1,A Ltd,004,123456780,HKD,1.00\n",
        "not a payout file",
        None,
    ),
    "bad amount": (HEADER + "sup-1,A Ltd,004,123456780,HKD,12.345\n", None, "invalid_amount"),
    "negative amount": (HEADER + "sup-1,A Ltd,004,123456780,HKD,-5\n", None, "invalid_amount"),
    "bad bank account": (
        HEADER + "sup-1,A Ltd,4x,12,HKD,1.00\n",
        None,
        "invalid_bank_code",
    ),
    "bad account number": (
        HEADER + "sup-1,A Ltd,004,12,HKD,1.00\n",
        None,
        "invalid_account_number",
    ),
    "duplicate row": (
        HEADER + "sup-1,A Ltd,004,123456780,HKD,1.00\nsup-1,A Ltd,004,123456780,HKD,1.00\n",
        None,
        "duplicate_reference",
    ),
    "wrong currency": (HEADER + "sup-1,A Ltd,004,123456780,CNY,1.00\n", None, "wrong_asset"),
    "more than the wallet": (
        HEADER + "sup-1,A Ltd,004,123456780,HKD,500.00\n",
        None,
        "insufficient_funds",
    ),
    "too many rows": (
        HEADER + "".join(f"r{n},A Ltd,004,123456780,HKD,0.01\n" for n in range(5001)),
        "at most 5000 rows",
        None,
    ),
    "no rows": (HEADER, "no rows", None),
    "not UTF-8": (HEADER.encode() + b"sup-1,Caf\xe9 Ltd,004,123456780,HKD,1.00\n", "UTF-8", None),
}


def test_a_bad_file_is_refused_as_a_whole_with_each_row_s_problem(
    live_url: str, pg_db: Engine
) -> None:
    merchant_id = shop(pg_db)
    charge(pg_db, merchant_id, payer(pg_db).email, "100.00")
    owner = hire(pg_db, merchant_id, "owner")
    with new_client(live_url) as client:
        portal_sign_in(client, owner)
        before = fingerprint(pg_db)
        for name, (text, sentence, code) in BAD_FILES.items():
            refused = _upload(client, text)
            assert refused.status_code == 422, (name, refused.status_code)
            if sentence is not None:
                assert sentence in refused.text, (name, refused.text[-2000:])
            if code is not None:
                assert f'data-problem="{code}"' in refused.text, name
                assert "Nothing was paid" in refused.text
        # one good row beside a bad one: the good row is not paid either
        mixed = _upload(client, GOOD + "bad row,A Ltd,004,123456780,HKD,1.00\n")
        assert mixed.status_code == 422 and 'data-problem="invalid_reference"' in mixed.text
        assert ">4<" in mixed.text  # the bad row's line number
        # no file at all; a confirm form with a bad file (sent by hand) is refused the same way
        token = csrf_token(client.get("/merchant/payouts").text)
        nothing = client.post("/merchant/payouts/check", data={"csrf_token": token})
        assert nothing.status_code == 422 and "Choose a CSV file" in nothing.text
        forged = client.post(
            "/merchant/payouts",
            data={
                "csrf_token": token,
                "idempotency_key": "k" * 20,
                "payout_file": str(BAD_FILES["duplicate row"][0]),
            },
        )
        assert forged.status_code == 422 and 'data-problem="duplicate_reference"' in forged.text
        assert fingerprint(pg_db) == before


def test_the_new_forms_refuse_a_missing_or_wrong_csrf_token(live_url: str, pg_db: Engine) -> None:
    merchant_id = shop(pg_db)
    charge(pg_db, merchant_id, payer(pg_db).email, "100.00")
    owner = hire(pg_db, merchant_id, "owner")
    with new_client(live_url) as client:
        portal_sign_in(client, owner)
        right = csrf_token(client.get("/merchant/payouts").text)
        before = fingerprint(pg_db)
        for token in (None, "", "wrong", right + "x"):
            extra = {} if token is None else {"csrf_token": token}
            checked = client.post(
                "/merchant/payouts/check",
                data=extra,
                files={"file": ("p.csv", GOOD.encode(), "text/csv")},
            )
            assert checked.status_code == 403 and "This form has expired" in checked.text
            confirmed = client.post(
                "/merchant/payouts",
                data={**extra, "payout_file": GOOD, "idempotency_key": "k" * 20},
            )
            assert confirmed.status_code == 403
        assert fingerprint(pg_db) == before


def test_a_suspended_shop_s_portal_says_so_and_moves_nothing(live_url: str, pg_db: Engine) -> None:
    merchant_id = shop(pg_db)
    charge(pg_db, merchant_id, payer(pg_db).email, "100.00")
    owner = hire(pg_db, merchant_id, "owner")
    with new_client(live_url) as client:
        portal_sign_in(client, owner)
        token = csrf_token(client.get("/merchant/payouts").text)
        operator = make_operator(pg_db)
        with db.unit_of_work(db.make_session_factory(pg_db)) as session:
            merchants.suspend(
                session=session,
                operator=_user(session, operator.email),
                merchant_id=merchant_id,
                reason="review",
            )
        before = fingerprint(pg_db)
        for path in ("/merchant/", "/merchant/settlements", "/merchant/payouts"):
            refused = client.get(path)
            assert refused.status_code == 403 and "This shop is suspended" in refused.text
        posted = client.post(
            "/merchant/payouts",
            data={"csrf_token": token, "payout_file": GOOD, "idempotency_key": "k" * 20},
        )
        assert posted.status_code == 403 and "This shop is suspended" in posted.text
        assert fingerprint(pg_db) == before
