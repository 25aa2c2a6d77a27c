"""The proof-of-reserves pages in a real Chromium (R-POR-3, R-POR-4): sign in and "Verify now",
a proof file chosen or dropped, tampered proofs, the public list, the CSP, and both languages
(English and Traditional Chinese: the steps and results the script shows, the switch)."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from strongroom.web.core import CONTENT_SECURITY_POLICY
from strongroom_verify import por_v1
from tests.api.conftest import PASSWORD

from .conftest import Console, Published, settle
from .conftest import screenshot as shoot_viewports

if TYPE_CHECKING:
    from playwright.sync_api import Page

DROP = """([text, name]) => {
  const transfer = new DataTransfer();
  transfer.items.add(new File([text], name, {type: 'application/json'}));
  const zone = document.getElementById('drop-zone');
  const options = {dataTransfer: transfer, bubbles: true, cancelable: true};
  for (const type of ['dragenter', 'dragover', 'drop']) {
    zone.dispatchEvent(new DragEvent(type, options));
  }
}"""


def open_verify(page: Page, url: str) -> None:
    response = page.goto(f"{url}/reserves/verify")
    assert response is not None and response.status == 200
    page.wait_for_selector("body[data-ready='true']")


def verdict(page: Page) -> str:
    page.wait_for_function(
        "() => /^(Valid|Invalid)/.test(document.getElementById('verdict').textContent)"
    )
    return page.inner_text("#verdict")


def steps(page: Page) -> list[str]:
    return page.locator("#steps li .text").all_inner_texts()


def screenshot(page: Page, name: str) -> None:
    """The page from its top (the script scrolls the result into view, and the header bar is
    sticky: a full-page shot taken scrolled down shows the bar in the middle)."""
    page.evaluate("() => window.scrollTo({top: 0, behavior: 'instant'})")
    shoot_viewports(page, name)


def failed_checks(page: Page) -> list[str]:
    return [str(item.get_attribute("data-check")) for item in page.locator("#steps li.fail").all()]


def sign_in(page: Page, email: str, password: str = PASSWORD) -> None:
    """Through the page's link to the Lite app's sign-in, which comes back here signed in (the
    verify page has no password form of its own)."""
    page.click("#sign-in-link")
    page.wait_for_url(re.compile(r"/app/signin\?next="))
    page.fill("form[action^='/app/signin'] input[name=email]", email)
    page.fill("form[action^='/app/signin'] input[name=password]", password)
    page.click("form[action^='/app/signin'] button[type=submit]")
    page.wait_for_url(re.compile(r"/reserves/verify$"))
    page.wait_for_selector("body[data-ready='true']")
    page.wait_for_selector("#signed-in")


def drop(page: Page, proof: object, name: str = "proof.json") -> None:
    page.evaluate(DROP, [json.dumps(proof), name])


def choose(page: Page, proof: object, tmp_path: Path, name: str = "proof.json") -> None:
    path = tmp_path / name
    path.write_text(json.dumps(proof, indent=2))
    page.set_input_files("#proof-file", str(path))


def _digit_changed(text: str) -> str:
    """The last digit of an amount or a hash, changed (another digit, so it stays well-formed)."""
    position = max(i for i, char in enumerate(text) if char.isdigit())
    digit = str((int(text[position]) + 1) % 10)
    return text[:position] + digit + text[position + 1 :]


# ------------------------------------------------------------------------------------------------
# (a) sign in, "Verify now"


def test_sign_in_and_verify_now(
    page: Page, live_url: str, published: Published, console: Console
) -> None:
    open_verify(page, live_url)
    assert page.is_disabled("#verify-now")  # nothing to fetch before signing in
    assert page.input_value("#audit-id") == published.audit.audit_id
    sign_in(page, published.alice.email)
    assert page.inner_text("#signed-in-as") == published.alice.email
    page.click("#verify-now")
    assert verdict(page) == "Valid"
    shown = steps(page)
    assert any(s.startswith("Leaf 1 of 2: leaf hash") for s in shown), shown
    assert any("path step 1 of" in s for s in shown), shown
    assert any(s.startswith("Leaf 2 of 2: root matches") for s in shown), shown
    assert any("total for HKD matches 143.45" in s for s in shown), shown
    assert any("Pieces add up to your HKD balance 123.45" in s for s in shown), shown
    assert "Root matches the root published for audit 2026-12-01" in shown[-2]
    assert page.inner_text("#published") == "Published root for audit 2026-12-01: matches"
    assert page.is_visible("#download")
    assert page.get_attribute("#download", "download") == "proof-2026-12-01.json"
    # no token is kept anywhere the page's script (or an injected one) could read it later
    # (the Lite app's htmx keeps its history path in sessionStorage: nothing secret)
    kept = page.evaluate(
        "() => JSON.stringify([Object.entries(sessionStorage), Object.entries(localStorage)])"
    )
    assert "prf1." not in kept and "token" not in kept.lower(), kept
    assert page.evaluate("() => document.cookie") == ""  # the session cookie is HttpOnly
    screenshot(page, "verify-valid")
    assert console.errors == []


def test_signed_in_user_without_a_balance_is_told_so(
    page: Page, live_url: str, published: Published, console: Console
) -> None:
    open_verify(page, live_url)
    sign_in(page, published.carol.email)
    page.click("#verify-now")
    page.wait_for_selector("#verdict.problem")
    assert "is not in audit 2026-12-01" in page.inner_text("#verdict")
    assert "prf1." not in page.evaluate("() => JSON.stringify(Object.entries(sessionStorage))")
    assert [e for e in console.errors if "404" not in e] == []  # the proof request's 404 only


def test_a_stranger_is_sent_to_the_apps_sign_in(
    page: Page, live_url: str, published: Published
) -> None:
    """No password form here: a link to the Lite app's sign-in that comes back, and nothing to
    fetch before it."""
    open_verify(page, live_url)
    assert page.get_attribute("#sign-in-link", "href") == "/app/signin?next=/reserves/verify"
    assert page.is_disabled("#verify-now")
    assert page.locator("input[type=password]").count() == 0


# ------------------------------------------------------------------------------------------------
# (b) a proof file made by the Python builder, chosen or dropped


def test_chosen_and_dropped_proof_files_verify(
    page: Page, live_url: str, published: Published, console: Console, tmp_path: Path
) -> None:
    alice, bob = published.proof(published.alice), published.proof(published.bob)
    assert por_v1.verify_proof(alice).valid and por_v1.verify_proof(bob).valid
    open_verify(page, live_url)
    choose(page, alice, tmp_path)
    assert verdict(page) == "Valid"
    assert page.inner_text("#published") == "Published root for audit 2026-12-01: matches"
    assert "123.45" in page.inner_text("#summary")
    drop(page, bob)
    page.wait_for_function("() => document.getElementById('summary').textContent.includes('20.00')")
    assert verdict(page) == "Valid"
    assert failed_checks(page) == []
    assert page.is_hidden("#download")  # the user has the file already
    assert console.errors == []


def test_a_proof_for_an_unpublished_audit_says_so(
    page: Page, live_url: str, published: Published, console: Console
) -> None:
    """Valid on its own, but this server has no such audit: the verdict says it was not
    compared, and a root that differs from the published one is invalid."""
    proof = published.proof(published.alice)
    other = {**proof, "audit_id": "1999-01-01"}
    open_verify(page, live_url)
    drop(page, other)
    assert verdict(page) == "Valid (not compared with a published root)"
    assert "is not published on this server" in page.inner_text("#published")
    assert [e for e in console.errors if "404" not in e] == []


# ------------------------------------------------------------------------------------------------
# (c) tampered proofs


def test_a_changed_balance_digit_is_invalid(
    page: Page, live_url: str, published: Published, console: Console
) -> None:
    proof = published.proof(published.alice)
    tampered = copy.deepcopy(proof)
    tampered["balances"]["HKD"] = _digit_changed(proof["balances"]["HKD"])  # 123.45 -> 123.46
    assert not por_v1.verify_proof(tampered).valid
    open_verify(page, live_url)
    drop(page, tampered)
    assert verdict(page) == "Invalid: pieces do not add up to the balance"
    assert failed_checks(page) == ["pieces add up"]
    assert "Pieces do not add up to your HKD balance" in page.inner_text("#steps li.fail")
    screenshot(page, "verify-invalid-balance")
    assert console.errors == []


def test_a_changed_path_hash_is_invalid_and_names_the_step(
    page: Page, live_url: str, published: Published, console: Console
) -> None:
    proof = published.proof(published.alice)
    first, second = proof["leaves"]
    meet = (first["index"] ^ second["index"]).bit_length() - 1  # where the two pieces' paths meet
    tampered: dict[str, Any] = copy.deepcopy(proof)
    step = tampered["leaves"][0]["path"][meet]
    step["hash"] = _digit_changed(step["hash"])
    python_failures = {check.name for check in por_v1.verify_proof(tampered).failures}
    assert python_failures == {"root", "shared nodes"}
    open_verify(page, live_url)
    drop(page, tampered)
    assert verdict(page) == "Invalid: root mismatch, path hash mismatch"
    assert set(failed_checks(page)) == python_failures
    failures = page.locator("#steps li.fail .text").all_inner_texts()
    assert any("Leaf 1 of 2: root mismatch" in text for text in failures), failures
    assert any(f"path step {meet + 1}: hash mismatch" in text for text in failures), failures
    screenshot(page, "verify-invalid-path")
    assert console.errors == []


def test_a_proof_with_another_root_is_not_the_published_one(
    page: Page, live_url: str, published: Published, tmp_path: Path
) -> None:
    """A self-consistent proof under a root the operator did not publish (here: the same
    balances in a tree built with another secret) is refused by the published-root check."""
    from strongroom.reserves.builder import BuildOptions, build
    from strongroom.reserves.proofs import ProofServer
    from strongroom.reserves.snapshot import Snapshot

    snapshot = Snapshot.from_mapping({"HKD": 2}, {published.alice.user_id: {"HKD": 123_45}})
    build(
        snapshot,
        tmp_path / "fake",
        secret=bytes(32),
        audit_id=published.audit.audit_id,
        options=BuildOptions(workers=1),
    )
    server = ProofServer(tmp_path / "fake")
    fake = server.proof(published.alice.user_id)
    server.close()
    assert por_v1.verify_proof(fake).valid
    open_verify(page, live_url)
    drop(page, fake)
    text = verdict(page)
    assert text.startswith("Invalid: not the published root"), text
    assert "does NOT match" in page.inner_text("#published")


def test_unreadable_files(page: Page, live_url: str, published: Published) -> None:
    open_verify(page, live_url)
    page.evaluate(DROP, ["{not json", "broken.json"])
    assert verdict(page) == "Invalid: malformed proof"
    drop(page, {"format": "strongroom-por-v1"})
    page.wait_for_function(
        "() => document.getElementById('steps').textContent.includes('audit_id: missing')"
    )
    assert verdict(page) == "Invalid: malformed proof"


# ------------------------------------------------------------------------------------------------
# (d) the public list


def test_reserves_page_lists_the_audit(
    page: Page, live_url: str, published: Published, console: Console
) -> None:
    response = page.goto(f"{live_url}/reserves")
    assert response is not None and response.status == 200
    card = page.locator("#audit-2026-12-01")
    assert "Latest" in card.inner_text()
    assert card.locator(".root").inner_text() == published.audit.root.hex()
    assert card.locator(".leaf-count").inner_text() == f"{published.audit.leaf_count:,}"
    rows = {
        row.get_attribute("data-asset"): [
            row.locator(f".{name}").inner_text().strip()
            for name in ("liabilities", "reserves", "ratio")
        ]
        for row in card.locator("tbody tr").all()
    }
    assert rows["HKD"] == ["143.45", "200.00", "1.3942"]
    assert rows["USDT"] == ["7.000000", "5.000000", "0.7142 below 1"]
    assert rows["BTC"] == ["0.05000000", "0.00000000", "0.0000 below 1"]
    card.locator("summary").click()
    assert "HSBC statement" in card.inner_text()
    screenshot(page, "reserves")
    card.get_by_role("link", name="Verify my balance in this audit").click()
    page.wait_for_url("**/reserves/verify?audit=2026-12-01")
    assert page.input_value("#audit-id") == "2026-12-01"
    assert console.errors == []


def test_reserves_page_before_any_audit(page: Page, live_url: str, console: Console) -> None:
    page.goto(f"{live_url}/reserves")
    assert page.inner_text("#no-audits") == "No audit has been published yet."
    page.goto(f"{live_url}/reserves/verify")
    page.wait_for_selector("body[data-ready='true']")
    assert page.locator("#verify-now").count() == 0
    assert console.errors == []


# ------------------------------------------------------------------------------------------------
# (e) the Content-Security-Policy


def test_pages_work_under_the_csp_and_it_is_enforced(
    page: Page, live_url: str, published: Published, console: Console
) -> None:
    for path in ("/reserves", "/reserves/verify"):
        response = page.goto(f"{live_url}{path}")
        assert response is not None
        assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
        assert response.headers["x-frame-options"] == "DENY"
        # the shared stylesheet applied, then the pages' own: the Lite app's background (not
        # the browser default) and its header bar
        sheets = page.eval_on_selector_all(
            "link[rel=stylesheet]", "links => links.map(link => new URL(link.href).pathname)"
        )
        assert sheets == ["/static/web/base.css", "/static/reserves/reserves.css"]
        background = page.evaluate("() => getComputedStyle(document.body).backgroundColor")
        assert background == "rgb(246, 247, 245)"
        assert page.locator("header.bar .brand").inner_text() == "Strongroom"
    page.wait_for_selector("body[data-ready='true']")  # the module script ran
    screenshot(page, "verify-empty")
    assert console.errors == []
    # An injected inline script is refused by the policy (and says so on the console).
    ran = page.evaluate(
        """() => {
          const script = document.createElement('script');
          script.textContent = 'window.inlineRan = true';
          document.body.append(script);
          return window.inlineRan === true;
        }"""
    )
    assert ran is False
    for _ in range(40):  # the refusal reaches the console asynchronously
        if any("Content Security Policy" in error for error in console.errors):
            break
        page.wait_for_timeout(50)
    assert any("Content Security Policy" in error for error in console.errors), console.errors


def test_dark_mode(page: Page, live_url: str, published: Published) -> None:
    page.emulate_media(color_scheme="dark")
    page.goto(f"{live_url}/reserves")
    background = page.evaluate("() => getComputedStyle(document.body).backgroundColor")
    assert background == "rgb(15, 20, 19)"  # the Lite app's dark background
    page.set_viewport_size({"width": 390, "height": 844})
    page.screenshot(path=str(_dark_path("reserves")), full_page=True)
    open_verify(page, live_url)
    drop(page, published.proof(published.alice))
    assert verdict(page) == "Valid"
    page.evaluate("() => window.scrollTo({top: 0, behavior: 'instant'})")
    page.screenshot(path=str(_dark_path("verify-valid")), full_page=True)


def _dark_path(name: str) -> Path:
    from .conftest import SCREENSHOTS

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS / f"{name}-mobile-dark.png"


# ------------------------------------------------------------------------------------------------
# (f) both languages: the zh-Hant pages, the switch, screenshots

Opener = Callable[..., "Page"]
LATIN_WORDS = (
    "Leaf",
    "path step",
    " root",
    "Pieces",
    "Read the proof",
    "Your tag",
    "matches",
    "sibling",
)


def decided(page: Page) -> str:
    """The verdict once verification finished, whatever the language."""
    page.wait_for_selector("#verdict.valid, #verdict.invalid")
    return page.inner_text("#verdict")


def open_verify_in(open_page: Opener, url: str, language: str) -> Page:
    page: Page = open_page(language)
    response = page.goto(f"{url}/reserves/verify")
    assert response is not None and response.status == 200
    page.wait_for_selector("body[data-ready='true']")
    return page


def test_verify_page_in_chinese_verifies_a_valid_proof(
    open_page: Opener, live_url: str, published: Published, console: Console
) -> None:
    page = open_verify_in(open_page, live_url, "zh_Hant")
    assert page.get_attribute("html", "lang") == "zh-Hant"
    assert page.inner_text("h1") == "驗證我的儲備證明"
    assert page.get_attribute("#verify-now", "title") == "請先登入"
    sign_in(page, published.alice.email)
    assert "已登入" in page.inner_text("#signed-in")
    page.click("#verify-now")
    assert decided(page) == "有效"
    assert page.inner_text("#published") == "審計 2026-12-01 已公佈的根雜湊：相符"
    shown = steps(page)
    assert shown[0] == "已讀取證明：審計 2026-12-01，2 個分片，4 片葉，樹高 2", shown
    assert any(s.startswith("由 user_salt 及帳戶編號") for s in shown), shown
    assert any(s.startswith("第 1／2 片葉：由你的標籤") for s in shown), shown
    assert any(s.startswith("第 1／2 片葉，路徑第 1／2 步：") for s in shown), shown
    assert "各分片加起來等於你的 HKD 餘額 123.45" in shown, shown
    assert any(s.startswith("第 2／2 片葉：根雜湊相符") for s in shown), shown
    assert any("HKD 的總額相符 143.45" in s for s in shown), shown
    assert shown[-2] == "根雜湊與審計 2026-12-01 已公佈的根雜湊相符"
    assert shown[-1] == "總額與已公佈的負債相符"
    for text in shown:  # every step in Chinese: only names, numbers and hashes stay Latin
        assert not any(word in text for word in LATIN_WORDS), text
    summary = page.inner_text("#summary")
    assert "你的 HKD" in summary and "123.45" in summary and "帳戶" in summary
    assert page.inner_text("#download") == "下載此證明（JSON）"
    settle(page)
    screenshot(page, "reserves-verify-valid-zh_Hant")
    assert console.errors == []


def test_verify_page_in_chinese_rejects_tampered_proofs(
    open_page: Opener, live_url: str, published: Published, console: Console
) -> None:
    proof = published.proof(published.alice)
    page = open_verify_in(open_page, live_url, "zh_Hant")
    tampered = copy.deepcopy(proof)
    tampered["balances"]["HKD"] = _digit_changed(proof["balances"]["HKD"])  # 123.45 -> 123.46
    drop(page, tampered)
    assert decided(page) == "無效：分片加起來不等於餘額"
    assert failed_checks(page) == ["pieces add up"]
    assert page.inner_text("#steps li.fail .text") == (
        "各分片加起來不等於你的 HKD 餘額：總和為 123.45，餘額所載為 123.46"
    )
    settle(page)
    screenshot(page, "reserves-verify-invalid-zh_Hant")
    path_changed: dict[str, Any] = copy.deepcopy(proof)
    first, second = proof["leaves"]
    meet = (first["index"] ^ second["index"]).bit_length() - 1
    step = path_changed["leaves"][0]["path"][meet]
    step["hash"] = _digit_changed(step["hash"])
    drop(page, path_changed)
    page.wait_for_function(
        "() => document.getElementById('verdict').textContent.includes('路徑雜湊不符')"
    )
    assert page.inner_text("#verdict") == "無效：根雜湊不符、路徑雜湊不符"
    failures = page.locator("#steps li.fail .text").all_inner_texts()
    assert any(f.startswith("第 1／2 片葉：根雜湊不符：計算結果為") for f in failures), failures
    assert any(
        f"路徑第 {meet + 1} 步：雜湊不符：兄弟節點不是第 2／2 片葉的節點" in f for f in failures
    )
    page.evaluate(DROP, ["{not json", "broken.json"])
    page.wait_for_function(
        "() => document.getElementById('verdict').textContent === '無效：證明格式有誤'"
    )
    assert page.inner_text("#steps li.fail .text").startswith("檔案不是 JSON：")
    drop(page, {"format": "strongroom-por-v1"})
    page.wait_for_function(
        "() => document.getElementById('steps').textContent.includes('缺少此欄位')"
    )
    assert page.inner_text("#steps li.fail .text") == "證明格式有誤：proof.audit_id：缺少此欄位"
    assert console.errors == []


def test_verify_page_in_chinese_links_to_sign_in(
    open_page: Opener, live_url: str, published: Published
) -> None:
    page = open_verify_in(open_page, live_url, "zh_Hant")
    assert page.inner_text("#sign-in-link") == "登入"
    assert "Strongroom" in page.inner_text("#sign-in")


def test_audits_page_in_chinese(
    open_page: Opener, live_url: str, published: Published, console: Console
) -> None:
    page: Page = open_page("zh_Hant")
    response = page.goto(f"{live_url}/reserves")
    assert response is not None and response.status == 200
    assert page.get_attribute("html", "lang") == "zh-Hant"
    assert page.title() == "儲備證明 · Strongroom"
    card = page.locator("#audit-2026-12-01")
    assert card.locator("h2").inner_text() == "審計 2026-12-01"
    assert card.locator(".badge").inner_text() == "最新"
    assert card.locator("time").inner_text() == "2026年12月1日 上午8:00:00"
    assert card.locator(".root").inner_text() == published.audit.root.hex()
    usdt = card.locator("tr[data-asset='USDT']")
    assert usdt.locator(".ratio").inner_text().strip() == "0.7142 低於 1"
    card.locator("summary").click()
    assert "HSBC statement" in card.inner_text() and "截至 2026年12月1日" in card.inner_text()
    settle(page)
    screenshot(page, "reserves-audits-zh_Hant")
    card.get_by_role("link", name="在此審計中驗證我的餘額").click()
    page.wait_for_url("**/reserves/verify?audit=2026-12-01")
    page.wait_for_selector("body[data-ready='true']")
    assert page.inner_text("#verify-now") == "立即驗證"
    assert console.errors == []


def test_the_switch_changes_the_language_of_the_reserves_pages(
    open_page: Opener, live_url: str, published: Published, console: Console
) -> None:
    page: Page = open_page("en")
    page.goto(f"{live_url}/reserves/verify?audit=2026-12-01")
    assert page.get_attribute("html", "lang") == "en"
    page.click("form.language button[value='zh_Hant']")
    page.wait_for_selector("html[lang='zh-Hant']")
    assert page.url.endswith("/reserves/verify?audit=2026-12-01")
    page.wait_for_selector("body[data-ready='true']")
    drop(page, published.proof(published.bob))
    assert decided(page) == "有效"
    page.goto(f"{live_url}/reserves")  # the choice is kept (the lang cookie)
    assert page.inner_text("h1") == "儲備證明"
    page.click("form.language button[value='en']")
    page.wait_for_selector("html[lang='en']")
    assert page.url.endswith("/reserves") and page.inner_text("h1") == "Proof of reserves"
    assert console.errors == []


def test_screenshots_of_the_reserves_pages_in_both_languages(
    open_page: Opener, live_url: str, published: Published, console: Console
) -> None:
    """``artifacts/screenshots/reserves-<page>-<language>-{mobile,desktop}.png`` (390x844 and
    1280x800) for a person to look at."""
    for language in ("en", "zh_Hant"):
        page: Page = open_page(language)
        page.goto(f"{live_url}/reserves")
        page.locator("#audit-2026-12-01 summary").click()
        settle(page)
        screenshot(page, f"reserves-audits-{language}")
        page.goto(f"{live_url}/reserves/verify")
        page.wait_for_selector("body[data-ready='true']")
        settle(page)
        screenshot(page, f"reserves-verify-empty-{language}")
        drop(page, published.proof(published.alice))
        decided(page)
        settle(page)
        screenshot(page, f"reserves-verify-valid-{language}")
    assert console.errors == []
