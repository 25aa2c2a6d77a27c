"""The console's merchants screen (issue #13, item 2) over HTTP on PostgreSQL: the list by
status and region (a made-up page link says so), who may see it (admin, support, finance) and
who may suspend or reinstate (admins: the others get "Not for your role" and nothing
changes), a reason required, suspending twice refused with nothing changed, every change in
the audit log with its reason, and the suspended shop's till refused until it is reinstated."""

from __future__ import annotations

import json

from sqlalchemy import select
from sqlalchemy.engine import Engine

from strongroom.identity.models import AuditEvent
from strongroom.merchants.models import Merchant

from .conftest import assert_locked_down, csrf_token, fingerprint, new_client
from .console_support import console_sign_in, make_operator
from .merchant_support import charge, hire, payer, portal_sign_in, shop


def _status(engine: Engine, merchant_id: str) -> tuple[str, str | None]:
    with engine.connect() as connection:
        row = connection.execute(
            select(Merchant.status, Merchant.suspended_reason).where(Merchant.id == merchant_id)
        ).one()
    return row[0], row[1]


def _reasons(engine: Engine, action: str) -> list[str]:
    with engine.connect() as connection:
        rows = connection.execute(
            select(AuditEvent.details_json).where(AuditEvent.action == action)
        ).scalars()
        return [json.loads(details)["reason"] for details in rows]


def test_the_list_filters_and_each_role_s_rights(live_url: str, pg_db: Engine) -> None:
    hk = shop(pg_db, "Lucky Tea House")
    cn = shop(pg_db, "Shenzhen Noodles", region="CN")
    for role, sees, manages in (
        ("admin", True, True),
        ("support", True, False),
        ("finance", True, False),
        ("kyc_reviewer", False, False),
    ):
        with new_client(live_url) as client:
            console_sign_in(client, make_operator(pg_db, role))
            listed = client.get("/console/merchants")
            assert listed.status_code == (200 if sees else 403), role
            assert ('href="/console/merchants"' in client.get("/console/").text) is sees
            if not sees:
                assert "Not for your role" in listed.text
                continue
            assert_locked_down(client, listed)
            assert hk in listed.text and cn in listed.text
            assert (f'action="/console/merchants/{hk}/suspend"' in listed.text) is manages
            only_cn = client.get("/console/merchants?region=CN").text
            assert cn in only_cn and hk not in only_cn
            assert hk not in client.get("/console/merchants?status=suspended").text
            bad = client.get("/console/merchants?cursor=made-up")
            assert bad.status_code == 422 and "That page link is not valid" in bad.text
            assert client.get("/console/merchants?status=closed").status_code == 422
            if not manages:
                token = csrf_token(listed.text)
                before = fingerprint(pg_db)
                refused = client.post(
                    f"/console/merchants/{hk}/suspend",
                    data={"csrf_token": token, "reason": "fraud"},
                )
                assert refused.status_code == 403 and "Not for your role" in refused.text
                # only the audit log records the attempt
                after = fingerprint(pg_db)
                assert {k: v for k, v in after.items() if after[k] != before[k]}.keys() <= {
                    "audit_events"
                }
                assert _status(pg_db, hk) == ("active", None)


def test_an_admin_suspends_and_reinstates_with_a_reason(live_url: str, pg_db: Engine) -> None:
    merchant_id = shop(pg_db)
    cashier = hire(pg_db, merchant_id, "cashier")
    someone = payer(pg_db)
    with new_client(live_url) as client:
        console_sign_in(client, make_operator(pg_db, "admin"))
        token = csrf_token(client.get("/console/merchants").text)
        path = f"/console/merchants/{merchant_id}/suspend"
        empty = client.post(path, data={"csrf_token": token, "reason": "   "})
        assert empty.status_code == 422 and "Give a reason" in empty.text
        assert _status(pg_db, merchant_id) == ("active", None)
        done = client.post(path, data={"csrf_token": token, "reason": "Chargebacks"})
        assert done.status_code == 303
        shown = client.get(done.headers["location"])
        assert "The merchant is suspended." in shown.text and "Chargebacks" in shown.text
        assert f'action="/console/merchants/{merchant_id}/reinstate"' in shown.text
        assert _status(pg_db, merchant_id) == ("suspended", "Chargebacks")
        assert _reasons(pg_db, "merchant.suspended") == ["Chargebacks"]
        again = client.post(path, data={"csrf_token": token, "reason": "twice"})
        assert again.status_code == 409 and "suspended already" in again.text
        assert _status(pg_db, merchant_id) == ("suspended", "Chargebacks")
        unknown = client.post(
            "/console/merchants/m_0000000000000000/suspend",
            data={"csrf_token": token, "reason": "x"},
        )
        assert unknown.status_code == 404
        # the shop's people are refused while it is suspended
        with new_client(live_url) as till:
            portal_sign_in(till, cashier)
            assert till.get("/merchant/pos").status_code == 403
        back = client.post(
            f"/console/merchants/{merchant_id}/reinstate",
            data={"csrf_token": token, "reason": "Cleared by risk"},
        )
        assert back.status_code == 303
        assert "The merchant is active again." in client.get(back.headers["location"]).text
        assert _status(pg_db, merchant_id) == ("active", None)
        assert _reasons(pg_db, "merchant.reinstated") == ["Cleared by risk"]
        with new_client(live_url) as till:
            portal_sign_in(till, cashier)
            assert till.get("/merchant/pos").status_code == 200
        assert charge(pg_db, merchant_id, someone.email, "5.00").startswith("ch_")
