"""The browser's verifier (static/reserves/por_v1.js) against the Python one on seeded random
proofs, valid and tampered: the same checks, in the same order, with the same outcome, so the
"Verify now" button and ``strongroom-verify`` can never disagree."""

from __future__ import annotations

import copy
import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from strongroom.reserves.proofs import ProofServer
from strongroom.web.core import static_url
from strongroom_verify import por_v1
from strongroom_verify.jsonio import load_json
from tests.unit.reserves.helpers import build_audit, random_balances
from tests.unit.verify.generators import build_por_v1

from .conftest import Console

if TYPE_CHECKING:
    from playwright.sync_api import Page

Proof = dict[str, Any]
SEED = 20261201
ASSETS = [("BTC", 8), ("ETH", 18), ("HKD", 2), ("USDT", 6), ("XRP", 0)]

RUN_JS = """async ([moduleUrl, texts]) => {
  const verifier = await import(moduleUrl);
  const results = [];
  for (const text of texts) {
    const result = await verifier.verifyProof(JSON.parse(text));
    results.push({valid: result.valid, checks: result.checks.map(c => [c.name, c.ok])});
  }
  return results;
}"""

PARSE_JS = """async ([moduleUrl, cases]) => {
  const verifier = await import(moduleUrl);
  return cases.map(([text, scale]) => {
    try { return verifier.parseAmount(text, scale).toString(); } catch (error) { return null; }
  });
}"""


def generated_proofs(rng: random.Random) -> list[Proof]:
    """Proofs from the test generator (an independent reading of POR_FORMATS §1)."""
    proofs: list[Proof] = []
    for _ in range(6):
        assets = sorted(rng.sample(ASSETS, rng.randint(1, 4)))
        accounts: dict[str, dict[str, int]] = {}
        for number in range(rng.randint(1, 12)):
            accounts[f"user-{number}-ü"] = {
                code: rng.choice([0, rng.randrange(1, 10 ** rng.randint(1, 30))])
                for code, _ in assets
            }
        accounts["whale"] = {code: 2**100 + rng.randrange(10**6) for code, _ in assets}
        tree = build_por_v1(accounts, assets, pieces=rng.randint(1, 4), seed=rng.randrange(1 << 30))
        for account_id in rng.sample(sorted(tree.placements), min(3, len(tree.placements))):
            proofs.append(tree.proof(account_id))
    return proofs


def builder_proofs(rng: random.Random, tmp_path: Path) -> list[Proof]:
    """Proofs from the real builder and proof server."""
    proofs: list[Proof] = []
    for number, pieces in enumerate((1, 3)):
        balances = random_balances(rng.randint(3, 9), seed=rng.randrange(1 << 30))
        directory = build_audit(tmp_path / f"audit-{number}", balances, pieces=pieces)
        server = ProofServer(directory)
        try:
            for account_id in rng.sample(sorted(balances), 3):
                proofs.append(server.proof(account_id))
        finally:
            server.close()
    return proofs


def _amount_slot(proof: Proof, rng: random.Random) -> tuple[dict[str, str], str]:
    holders: list[dict[str, str]] = [proof["balances"], proof["totals"]]
    for leaf in proof["leaves"]:
        holders.append(leaf["balances"])
        holders += [step["balances"] for step in leaf["path"]]
    holder = rng.choice(holders)
    return holder, rng.choice(sorted(holder))


def _change_digit(proof: Proof, rng: random.Random) -> None:
    slots: list[tuple[dict[str, Any], str]] = [(proof, "root"), (proof, "user_salt")]
    for leaf in proof["leaves"]:
        slots += [(step, "hash") for step in leaf["path"]]
    holder, key = rng.choice(slots)
    if rng.random() < 0.5:
        holder, key = _amount_slot(proof, rng)
    text: str = holder[key]
    positions = [i for i, char in enumerate(text) if char.isdigit()]
    if positions:
        at = rng.choice(positions)
        holder[key] = text[:at] + str((int(text[at]) + rng.randint(1, 9)) % 10) + text[at + 1 :]


def _set_amount(value: Callable[[str], str]) -> Callable[[Proof, random.Random], None]:
    def mutate(proof: Proof, rng: random.Random) -> None:
        holder, code = _amount_slot(proof, rng)
        holder[code] = value(holder[code])

    return mutate


def _leaf(proof: Proof, rng: random.Random) -> dict[str, Any]:
    leaf: dict[str, Any] = rng.choice(proof["leaves"])
    return leaf


def _swap_side(proof: Proof, rng: random.Random) -> None:
    _leaf(proof, rng)["index"] ^= 1


def _drop_step(proof: Proof, rng: random.Random) -> None:
    path = _leaf(proof, rng)["path"]
    if path:
        path.pop(rng.randrange(len(path)))


def _huge_sibling(proof: Proof, rng: random.Random) -> None:
    leaf = _leaf(proof, rng)
    if leaf["path"]:
        step = rng.choice(leaf["path"])
        code = rng.choice(sorted(step["balances"]))
        scale = next(a["scale"] for a in proof["assets"] if a["code"] == code)
        step["balances"][code] = por_v1.format_amount(por_v1.U128_MAX, scale)


def _repeat_piece(proof: Proof, rng: random.Random) -> None:
    if len(proof["leaves"]) > 1:
        proof["leaves"][1]["piece"] = proof["leaves"][0]["piece"]


def _uppercase_root(proof: Proof, rng: random.Random) -> None:
    proof["root"] = proof["root"].upper()


MUTATIONS: list[Callable[[Proof, random.Random], None]] = [
    _change_digit,
    _change_digit,
    _change_digit,
    _swap_side,
    _drop_step,
    _huge_sibling,
    _repeat_piece,
    _uppercase_root,
    _set_amount(lambda text: "-" + text),
    _set_amount(lambda text: text + "1" if "." in text else text + ".1"),
    _set_amount(lambda text: "1" + "0" * 40),
    _set_amount(lambda text: "1e3"),
    lambda proof, rng: proof.update(leaf_count=proof["leaf_count"] * 2),
    lambda proof, rng: proof.update(height=proof["leaf_count"].bit_length()),
    lambda proof, rng: proof.update(account_id=proof["account_id"] + "x"),
    lambda proof, rng: proof.pop(rng.choice(["user_salt", "assets", "leaves", "totals"])),
    lambda proof, rng: proof.update(leaves=proof["leaves"] * 17),
    lambda proof, rng: _leaf(proof, rng).update(piece=16),
    lambda proof, rng: _leaf(proof, rng).update(index=proof["leaf_count"] + 3),
]


def run_js(page: Page, texts: list[str]) -> list[dict[str, Any]]:
    module = static_url("reserves/por_v1.js")
    results: list[dict[str, Any]] = page.evaluate(RUN_JS, [module, texts])
    return results


def test_js_and_python_agree_on_random_proofs(
    page: Page, sqlite_url: str, console: Console, tmp_path: Path
) -> None:
    rng = random.Random(SEED)
    valid = generated_proofs(rng) + builder_proofs(rng, tmp_path)
    tampered = []
    for proof in valid:
        for mutation in rng.sample(MUTATIONS, 2):
            changed = copy.deepcopy(proof)
            mutation(changed, rng)
            tampered.append(changed)
    texts = [json.dumps(proof, ensure_ascii=rng.random() < 0.5) for proof in valid + tampered]
    page.goto(f"{sqlite_url}/reserves/verify")  # under the page's CSP
    browser_results = run_js(page, texts)
    verdicts = {True: 0, False: 0}
    for number, (text, in_browser) in enumerate(zip(texts, browser_results, strict=True)):
        python = por_v1.verify_proof(load_json(text))
        expected = [[check.name, check.ok] for check in python.checks]
        assert in_browser["checks"] == expected, (number, text[:300], python.failures)
        assert in_browser["valid"] == python.valid
        verdicts[python.valid] += 1
    assert verdicts[True] >= len(valid) >= 20
    assert verdicts[False] >= 30
    assert console.errors == []


AMOUNT_CASES = [
    ("0", 0),
    ("12.5", 8),
    ("12.50000000", 8),
    ("12.500000001", 8),
    ("007.10", 2),
    ("1.", 2),
    (".5", 2),
    ("", 2),
    ("+1", 2),
    ("-1", 2),
    ("1e3", 2),
    ("1E3", 0),
    (" 1", 2),
    ("1 ", 2),
    ("1\n", 2),
    ("1,5", 2),
    ("0x10", 0),
    ("١", 0),  # an Arabic-Indic digit: not [0-9]
    (str(2**128 - 1), 0),
    (str(2**128), 0),
    ("3402823669209384634633746074317682.11455", 5),
    ("3402823669209384634633746074317682.11456", 5),
    ("1" * 80, 38),
    ("1" * 81, 0),
    ("1.0", 39),
    ("1", -1),
]


def test_js_and_python_parse_amounts_alike(page: Page, sqlite_url: str) -> None:
    page.goto(f"{sqlite_url}/reserves/verify")
    in_browser = page.evaluate(PARSE_JS, [static_url("reserves/por_v1.js"), AMOUNT_CASES])
    expected: list[str | None] = []
    for text, scale in AMOUNT_CASES:
        try:
            expected.append(str(por_v1.parse_amount(text, scale)))
        except ValueError:
            expected.append(None)
    assert in_browser == expected
    assert expected.count(None) >= 15
