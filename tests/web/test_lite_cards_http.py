"""The Lite app's virtual cards over HTTP (issue #13, R-TOKEN-1), against the live server on
PostgreSQL: the whole number shown once at creation and never again, a shop restriction shown
by the shop's name, suspend, resume and delete, clear refusals with nothing written, another
user's card or a made-up id answered with the 404 page and left as it was."""

from __future__ import annotations

import re
from html import unescape

import httpx
from sqlalchemy import select
from sqlalchemy.engine import Engine

from strongroom import db
from strongroom.errors import DomainError
from strongroom.merchants import charges
from strongroom.merchants import service as merchants
from strongroom.tokens import domain
from strongroom.tokens.models import VirtualCard
from tests.api.conftest import make_settings

from .conftest import csrf_token, fingerprint, new_client, web_sign_in, web_user
from .merchant_support import shop

NUMBER = re.compile(r'<p class="virtual-card-number" id="card-number">([0-9 ]+)</p>')


def _alert(html: str) -> str:
    found = re.search(r'<p class="alert" role="alert">(.*?)</p>', html, re.S)
    assert found is not None, "no alert on the page"
    return unescape(found.group(1))


def _post(http: httpx.Client, path: str, **form: str) -> httpx.Response:
    token = csrf_token(http.get("/app/cards").text)
    return http.post(path, data={"csrf_token": token, **form})


def _create(http: httpx.Client, merchant_id: str = "") -> tuple[str, str]:
    """A new card through the form: its id and its whole number, from the answer."""
    made = _post(http, "/app/cards", merchant_id=merchant_id)
    assert made.status_code == 200, made.text
    number = NUMBER.search(made.text)
    card = re.search(r'id="card-created" data-card="(vc_[0-9a-f]+)"', made.text)
    assert number is not None and card is not None
    return card.group(1), number.group(1).replace(" ", "")


def _card(engine: Engine, card_id: str) -> VirtualCard:
    with db.make_session_factory(engine)() as session:
        found = session.scalars(select(VirtualCard).where(VirtualCard.id == card_id)).one()
        session.expunge(found)
        return found


def _charge_refusal(engine: Engine, number: str) -> str | None:
    """What a shop's terminal charging ``number`` is told (None: it would be charged)."""
    settings = make_settings(engine)
    merchant_id = shop(engine)
    with db.make_session_factory(engine)() as session:
        try:
            charges.payer_from(
                session=session,
                merchant=merchants.get(session=session, merchant_id=merchant_id),
                settings=settings,
                payment_code=None,
                token=number,
                emv_payload=None,
            )
        except DomainError as refused:
            return refused.code
        finally:
            session.rollback()
    return None


def _shown(html: str, card_id: str) -> str:
    found = re.search(rf'<li class="card virtual-card" data-card="{card_id}".*?</li>', html, re.S)
    assert found is not None, f"{card_id} is not listed"
    return found.group(0)


def test_a_new_card_shows_its_number_once_then_its_last_four(
    http: httpx.Client, pg_db: Engine
) -> None:
    web_sign_in(http, web_user(pg_db))
    empty = http.get("/app/cards")
    assert empty.status_code == 200 and "You have no virtual card yet." in empty.text
    assert empty.headers["cache-control"] == "no-store"
    card_id, number = _create(http)
    assert len(number) == 16 and domain.luhn_valid(number)
    listed = http.get("/app/cards")
    assert number not in listed.text.replace(" ", "")
    row = _shown(listed.text, card_id)
    assert f"•••• {number[-4:]}" in row and "Active" in row and "Any shop" in row
    assert _card(pg_db, card_id).last4 == number[-4:]


def test_a_card_for_one_shop_names_it(http: httpx.Client, pg_db: Engine) -> None:
    web_sign_in(http, web_user(pg_db))
    merchant_id = shop(pg_db)
    card_id, _number = _create(http, merchant_id)
    assert _card(pg_db, card_id).merchant_id == merchant_id
    assert "Only Lucky Tea House" in _shown(http.get("/app/cards").text, card_id)
    # an id that is not one of our shops is shown as typed (the API takes opaque ids too)
    other_id, _ = _create(http, "shop-42")
    assert "Only shop-42" in _shown(http.get("/app/cards").text, other_id)


def test_suspend_resume_and_delete(http: httpx.Client, pg_db: Engine) -> None:
    web_sign_in(http, web_user(pg_db))
    card_id, number = _create(http)
    suspended = _post(http, "/app/cards/suspend", card_id=card_id)
    assert suspended.status_code == 303 and suspended.headers["location"] == "/app/cards"
    row = _shown(http.get("/app/cards").text, card_id)
    assert 'data-status="suspended"' in row and "Suspended" in row and "Resume" in row
    assert _card(pg_db, card_id).status == "suspended"
    assert _charge_refusal(pg_db, number) == "token_suspended"  # a shop cannot charge it
    assert _post(http, "/app/cards/resume", card_id=card_id).status_code == 303
    assert _card(pg_db, card_id).status == "active"
    assert _charge_refusal(pg_db, number) is None
    assert _post(http, "/app/cards/delete", card_id=card_id).status_code == 303
    assert card_id not in http.get("/app/cards").text
    assert _card(pg_db, card_id).status == "deleted"
    # a deleted card is gone: acting on it is the 404 page
    assert _post(http, "/app/cards/resume", card_id=card_id).status_code == 404
    assert _card(pg_db, card_id).status == "deleted"


def test_bad_input_and_other_users_cards_are_refused_with_nothing_written(
    http: httpx.Client, live_url: str, pg_db: Engine
) -> None:
    web_sign_in(http, web_user(pg_db))
    mine, _ = _create(http)
    before = fingerprint(pg_db)
    bad = _post(http, "/app/cards", merchant_id="not a shop id!")
    assert bad.status_code == 422
    assert "letters, digits" in _alert(bad.text)
    assert 'value="not a shop id!"' in bad.text  # kept in the form, to correct it
    for card_id in ("", "x", "vc_" + "0" * 24, "vc_" + "z" * 150, mine + "0"):
        for action in ("suspend", "resume", "delete"):
            refused = _post(http, f"/app/cards/{action}", card_id=card_id)
            assert refused.status_code == 404, (card_id, action)
    too_long = _post(http, "/app/cards/suspend", card_id="vc_" + "0" * 300)
    assert too_long.status_code == 422
    assert fingerprint(pg_db) == before
    with new_client(live_url) as other:
        web_sign_in(other, web_user(pg_db, "Mallory"))
        assert mine not in other.get("/app/cards").text
        token = csrf_token(other.get("/app/cards").text)
        before = fingerprint(pg_db)
        for action in ("suspend", "resume", "delete"):
            stranger = other.post(
                f"/app/cards/{action}", data={"csrf_token": token, "card_id": mine}
            )
            assert stranger.status_code == 404
            assert "Page not found" in stranger.text
        assert fingerprint(pg_db) == before
    assert _card(pg_db, mine).status == "active"


def test_the_number_of_cards_is_bounded(http: httpx.Client, pg_db: Engine) -> None:
    web_sign_in(http, web_user(pg_db))
    page = http.get("/app/cards").text
    most = int(re.search(r"You can have up to (\d+) cards", page).group(1))  # type: ignore[union-attr]
    for _ in range(most):
        _create(http)
    before = fingerprint(pg_db)
    over = _post(http, "/app/cards")
    assert over.status_code == 422
    assert f"You have {most} virtual cards, the most there can be" in _alert(over.text)
    assert fingerprint(pg_db) == before
