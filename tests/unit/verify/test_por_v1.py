"""strongroom-por-v1: primitives, exact amounts, and proofs from an independent test generator."""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import random
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from strongroom_verify import por_v1
from strongroom_verify.cli import main
from strongroom_verify.formats import detect
from strongroom_verify.result import ProofError

from .generators import PorV1Tree, build_por_v1, por_leaf, por_user_tag

ASSETS = [("BTC", 8), ("ETH", 18), ("USDT", 6)]
ACCOUNTS = {
    "u_1": {"BTC": 50_000_000, "USDT": 10_000_000},
    "u_2": {"BTC": 1, "ETH": 3 * 10**18},
    "u_3": {"USDT": 123_456_789},
    "ümlaut-7": {"BTC": 2_100_000_000_000_000, "ETH": 1, "USDT": 1},
    "u_zero": {},
}
Proof = dict[str, Any]


@pytest.fixture(scope="module")
def tree() -> PorV1Tree:
    return build_por_v1(ACCOUNTS, ASSETS, pieces=2)


def failures(proof: object) -> list[str]:
    return [check.message for check in por_v1.verify_proof(proof).failures]


# ------------------------------------------------------------------------------------------------
# Primitives


def test_byte_layouts_match_the_spec() -> None:
    salt = bytes(range(32))
    tag = por_v1.user_tag(salt, "u_42")
    assert tag == hashlib.sha256(b"strongroom-por-v1/user\x00" + salt + b"u_42").digest()
    vector = (5, 2**128 - 1)
    assert por_v1.enc(vector) == (5).to_bytes(16, "big") + b"\xff" * 16
    leaf = por_v1.leaf_hash(tag, 3, vector)
    expected_leaf = b"\x00" + tag + b"\x00\x00\x00\x03" + por_v1.enc(vector)
    assert leaf == hashlib.sha256(expected_leaf).digest()
    node = por_v1.node_hash(leaf, vector, tag, (0, 0))
    expected_node = b"\x01" + leaf + por_v1.enc(vector) + tag + bytes(32)
    assert node == hashlib.sha256(expected_node).digest()
    secret = b"s" * 32
    assert (
        por_v1.derive_user_salt(secret, "u_42")
        == hmac.new(secret, b"strongroom-por-v1/salt" + b"u_42", hashlib.sha256).digest()
    )


def test_known_answer() -> None:
    """Pins the format: these bytes must never change."""
    salt = por_v1.derive_user_salt(b"k" * 32, "u_42")
    tag = por_v1.user_tag(salt, "u_42")
    leaf = por_v1.leaf_hash(tag, 0, (50_000_000, 10_000_000))
    assert leaf == por_leaf(por_user_tag(salt, "u_42"), 0, (50_000_000, 10_000_000))
    assert salt.hex() == "b611cc456f55abcd4552fb087e9869da88516c6912250a9464c68586df39b134"
    assert leaf.hex() == "9b6a797235f9e376cbd1ff57b5ad40c006e1eb4e5e81c69a4ed311fe8283125b"


@pytest.mark.parametrize(
    ("text", "scale", "amount"),
    [
        ("0", 8, 0),
        ("0.5", 8, 50_000_000),
        ("0.50000000", 8, 50_000_000),
        ("12", 0, 12),
        ("1520.00000000", 8, 152_000_000_000),
        ("340282366920938463463374607431768211455", 0, 2**128 - 1),
        ("3.40282366920938463463374607431768211455", 38, 2**128 - 1),
    ],
)
def test_parse_amount(text: str, scale: int, amount: int) -> None:
    assert por_v1.parse_amount(text, scale) == amount


@pytest.mark.parametrize(
    ("text", "scale", "why"),
    [
        ("0.123456789", 8, "more decimals than the scale"),
        ("1.5", 0, "more decimals than the scale"),
        ("-1", 8, "has a sign"),
        ("+1", 8, "has a sign"),
        ("1e3", 8, "has an exponent"),
        ("1E3", 8, "has an exponent"),
        (" 1", 8, "whitespace"),
        ("1\n", 8, "whitespace"),
        ("340282366920938463463374607431768211456", 0, "over 2^128-1"),
        ("1.", 8, "not a plain decimal"),
        (".5", 8, "not a plain decimal"),
        ("", 8, "not a plain decimal"),
        ("١", 0, "not a plain decimal"),  # an Arabic-Indic digit is not [0-9]
        ("1" * 81, 0, "too long"),
    ],
)
def test_parse_amount_rejects(text: str, scale: int, why: str) -> None:
    with pytest.raises(ValueError, match=why.replace("^", r"\^")):
        por_v1.parse_amount(text, scale)


def test_format_amount_round_trips() -> None:
    rng = random.Random(1)
    for _ in range(200):
        scale = rng.randint(0, 38)
        amount = rng.randint(0, 2**128 - 1)
        text = por_v1.format_amount(amount, scale)
        assert por_v1.parse_amount(text, scale) == amount
        assert text.count(".") == (1 if scale else 0)
    assert por_v1.format_amount(50_000_000, 8) == "0.50000000"


def test_primitives_refuse_bad_inputs() -> None:
    with pytest.raises(ValueError):
        por_v1.user_tag(bytes(31), "u")
    with pytest.raises(ValueError):
        por_v1.user_tag(bytes(32), "x" * 65)
    with pytest.raises(ValueError):
        por_v1.leaf_hash(bytes(32), 2**32, (1,))
    with pytest.raises(ValueError):
        por_v1.node_hash(bytes(32), (1,), bytes(32), (1, 2))
    with pytest.raises(ValueError):
        por_v1.add_vectors((2**128 - 1,), (1,))
    with pytest.raises(ValueError):
        por_v1.derive_user_salt(b"short", "u")


# ------------------------------------------------------------------------------------------------
# Proofs


def test_every_account_verifies(tree: PorV1Tree) -> None:
    assert set(tree.placements) == {"u_1", "u_2", "u_3", "ümlaut-7"}  # u_zero is left out
    for account_id in tree.placements:
        proof = tree.proof(account_id)
        assert detect(proof) == "strongroom-por-v1"
        result = por_v1.verify_proof(proof)
        assert result.valid, result.failures
        assert result.root == tree.root.hex()
    result = por_v1.verify_proof(tree.proof("u_1"))
    assert result.balances == {"BTC": "0.50000000", "ETH": "0." + "0" * 18, "USDT": "10.000000"}
    assert result.totals == tree.amounts(tree.totals)


@pytest.mark.parametrize("pieces", [1, 3, 16])
def test_piece_counts(pieces: int) -> None:
    tree = build_por_v1(ACCOUNTS, ASSETS, pieces=pieces, seed=pieces)
    for account_id in tree.placements:
        assert por_v1.verify_proof(tree.proof(account_id)).valid


def test_through_main(tree: PorV1Tree, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "proof.json"
    path.write_text(json.dumps(tree.proof("u_2")))
    assert main([str(path)]) == 0
    out = capsys.readouterr().out
    assert "strongroom-por-v1" in out
    assert f"root:     {tree.root.hex()}" in out


def _mutate_digit(text: str, offset: int) -> str:
    char = text[offset]
    replacement = "0123456789abcdef"[("0123456789abcdef".index(char) + 1) % 10]
    return text[:offset] + replacement + text[offset + 1 :]


def _string_slots(node: object, trail: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    """Paths to every hash and amount string in the proof (not ids, formats or the salt)."""
    slots: list[tuple[object, ...]] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key not in ("format", "audit_id", "account_id", "code"):
                slots += _string_slots(value, (*trail, key))
    elif isinstance(node, list):
        for position, value in enumerate(node):
            slots += _string_slots(value, (*trail, position))
    elif isinstance(node, str):
        slots.append(trail)
    return slots


def test_every_sampled_digit_change_fails(tree: PorV1Tree) -> None:
    proof = tree.proof("u_1")
    rng = random.Random(11)
    mutations = 0
    for slot in _string_slots(proof):
        holder: Any = proof
        for key in slot[:-1]:
            holder = holder[key]
        text = holder[slot[-1]]
        digits = [i for i, char in enumerate(text) if char in "0123456789abcdef"]
        for offset in rng.sample(digits, min(6, len(digits))):
            mutated: Any = copy.deepcopy(proof)
            target = mutated
            for key in slot[:-1]:
                target = target[key]
            target[slot[-1]] = _mutate_digit(text, offset)
            assert not por_v1.verify_proof(mutated).valid, (slot, offset)
            mutations += 1
    assert mutations >= 200


def test_tampered_own_piece_balance(tree: PorV1Tree) -> None:
    proof: Proof = tree.proof("u_1")
    proof["leaves"][0]["balances"]["BTC"] = "0.00000001"
    messages = failures(proof)
    assert any("pieces do not add up to balances for BTC" in m for m in messages)
    assert any("root mismatch" in m for m in messages)


def test_tampered_sibling_hash_names_the_step(tree: PorV1Tree) -> None:
    proof: Proof = tree.proof("u_1")
    first, second = proof["leaves"]
    meet = (first["index"] ^ second["index"]).bit_length() - 1
    step = first["path"][meet]
    step["hash"] = _mutate_digit(
        step["hash"], next(i for i, c in enumerate(step["hash"]) if c.isdigit())
    )
    messages = failures(proof)
    assert any("root mismatch" in m for m in messages)
    assert any(f"path step {meet}: hash mismatch" in m for m in messages), messages


def test_tampered_sibling_side(tree: PorV1Tree) -> None:
    proof: Proof = tree.proof("u_3")
    proof["leaves"][0]["index"] ^= 1  # the same path, read with the sibling on the other side
    assert any("root mismatch" in m for m in failures(proof))


def test_tampered_salt_and_account(tree: PorV1Tree) -> None:
    proof: Proof = tree.proof("u_3")
    proof["user_salt"] = "00" * 32
    assert any("root mismatch" in m for m in failures(proof))
    proof = tree.proof("u_3")
    proof["account_id"] = "u_4"
    assert any("root mismatch" in m for m in failures(proof))


def test_tampered_totals_and_root(tree: PorV1Tree) -> None:
    proof: Proof = tree.proof("u_2")
    proof["totals"]["USDT"] = "0.000001"
    assert any("totals mismatch for USDT" in m for m in failures(proof))
    proof = tree.proof("u_2")
    proof["root"] = "00" * 32
    assert failures(proof)[0].startswith("leaf 0 (index")
    assert "root mismatch: computed " in failures(proof)[0]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda p: p["leaves"][0]["path"].pop(), "path has"),
        (lambda p: p.update(leaf_count=p["leaf_count"] * 2), "path has"),
        (lambda p: p.update(leaf_count=6), "not a power of two"),
        (lambda p: p.update(leaf_count=1), "not a power of two"),
        (lambda p: p.update(height=99), "height: 99 is not log2(leaf_count)"),
        (lambda p: p["leaves"][0].update(index=10**6), "index is not below leaf_count"),
        (lambda p: p["leaves"][1].update(piece=p["leaves"][0]["piece"]), "piece indices repeat"),
        (lambda p: p["leaves"][1].update(index=p["leaves"][0]["index"]), "leaf indices repeat"),
        (lambda p: p["leaves"][0].update(piece=16), "leaves[0].piece"),
        (lambda p: p["balances"].update(BTC="0.500000001"), "more decimals than the scale 8"),
        (lambda p: p["balances"].update(XRP="1"), "'XRP' is not one of the audit's assets"),
        (lambda p: p["balances"].pop("ETH"), "balances.ETH: missing"),
        (lambda p: p["assets"].reverse(), "sorted by code"),
        (lambda p: p.update(user_salt="AB" * 32), "user_salt: expected 64 lowercase hex"),
        (lambda p: p.update(account_id="x" * 65), "account_id must be 1..64 UTF-8 bytes"),
        (lambda p: p.update(leaves=[]), "leaves: expected 1..16 pieces"),
    ],
)
def test_malformed_or_inconsistent(tree: PorV1Tree, change: Any, expected: str) -> None:
    proof: Proof = tree.proof("u_1")
    change(proof)
    messages = failures(proof)
    assert messages, "must be invalid"
    assert any(expected in m for m in messages), messages


# ------------------------------------------------------------------------------------------------
# Attacks


def test_ji_chalkias_understated_sum_passes_a_summed_only_tree() -> None:
    """In a tree whose parents commit only to the sum (OKX v1 here), the prover publishes a
    parent of max(a, b) instead of a + b and shows each user the sibling balance that makes
    their own check add up: both proofs verify and the liabilities are understated."""
    from strongroom_verify.formats import okx_v1

    from .generators import okx_json, okx_parent

    a, b = ("3", "0", "0"), ("5", "0", "0")
    hash_a = hashlib.sha256(("na" + okx_json(a)).encode()).hexdigest()
    hash_b = hashlib.sha256(("nb" + okx_json(b)).encode()).hexdigest()
    understated = ("5", "0", "0")  # max(a, b), not 8
    root = okx_parent(hash_a, hash_b, understated, 2)

    def proof(me: tuple[str, ...], nonce: str, my_hash: str, sibling: tuple[str, ...]) -> Proof:
        left = my_hash == hash_a
        sibling_node = {
            "balances": dict(zip(("BTC", "ETH", "USDT"), sibling, strict=True)),
            "hash": hash_b if left else hash_a,
            "type": 2 if left else 1,
            "height": 1,
        }
        root_node = {
            "balances": dict(zip(("BTC", "ETH", "USDT"), understated, strict=True)),
            "hash": root,
            "type": 3,
            "height": 2,
        }
        me_node = {
            "balances": dict(zip(("BTC", "ETH", "USDT"), me, strict=True)),
            "nonce": nonce,
            "hash": my_hash,
            "type": 1 if left else 2,
            "height": 1,
        }
        return {"self": me_node, "path": [sibling_node, root_node]}

    assert okx_v1.verify(proof(a, "na", hash_a, ("2", "0", "0"))).valid
    assert okx_v1.verify(proof(b, "nb", hash_b, ("0", "0", "0"))).valid


def test_ji_chalkias_understated_sum_fails_in_por_v1() -> None:
    """The same attack against strongroom-por-v1: a node commits to both children's vectors, so
    whichever root the prover publishes, one of the two users' proofs fails."""
    tree = build_por_v1({"a": {"BTC": 3}, "b": {"BTC": 5}}, [("BTC", 0)], pieces=1)
    assert len(tree.levels[0]) == 2
    (hash_0, vector_0), (hash_1, vector_1) = tree.levels[0]
    honest = tree.proof("a")
    assert por_v1.verify_proof(honest).valid
    understated = max(vector_0[0], vector_1[0])
    # Each user is shown the sibling balance that makes their own sum come to `understated`.
    shown_to_0 = (understated - vector_0[0],)
    shown_to_1 = (understated - vector_1[0],)
    root_for_0 = por_v1.node_hash(hash_0, vector_0, hash_1, shown_to_0)
    root_for_1 = por_v1.node_hash(hash_0, shown_to_1, hash_1, vector_1)
    assert root_for_0 != root_for_1
    for published_root in (root_for_0, root_for_1):
        outcomes = []
        for account_id in ("a", "b"):
            proof: Proof = tree.proof(account_id)
            index = proof["leaves"][0]["index"]
            shown = shown_to_0 if index == 0 else shown_to_1
            proof["leaves"][0]["path"][0]["balances"] = {"BTC": str(shown[0])}
            proof["root"] = published_root.hex()
            proof["totals"] = {"BTC": str(understated)}
            outcomes.append(por_v1.verify_proof(proof).valid)
        assert outcomes.count(False) >= 1, "one of the two users must catch it"
    # And publishing the honest node with understated totals is caught by everyone.
    lying: Proof = tree.proof("a")
    lying["totals"] = {"BTC": str(understated)}
    assert any("totals mismatch for BTC" in m for m in failures(lying))


def test_negative_balances_cannot_be_encoded() -> None:
    """A negative balance (a fake account that offsets real liabilities) has no encoding: amounts
    are parsed without a sign and hashed as unsigned 128-bit integers."""
    with pytest.raises(ValueError, match="has a sign"):
        por_v1.parse_amount("-1.00000000", 8)
    with pytest.raises(ValueError, match=r"outside 0\.\.2"):
        por_v1.enc((-1,))
    with pytest.raises(ValueError):
        por_v1.leaf_hash(bytes(32), 0, (-5,))


def test_negative_sibling_in_a_proof_is_invalid(tree: PorV1Tree) -> None:
    proof: Proof = tree.proof("u_1")
    proof["leaves"][0]["path"][0]["balances"]["BTC"] = "-1.00000000"
    assert any("has a sign" in m for m in failures(proof))


def test_wraparound_instead_of_a_negative_is_caught() -> None:
    """With arithmetic mod 2^128, a sibling of 2^128 - x would act as -x. Sums are checked
    against 2^128 - 1 instead, so the attempt is reported as an overflow."""
    tree = build_por_v1({"a": {"BTC": 7}, "b": {"BTC": 5}}, [("BTC", 0)], pieces=1)
    proof: Proof = tree.proof("a")
    proof["leaves"][0]["path"][0]["balances"] = {"BTC": str(2**128 - 5)}
    proof["totals"] = {"BTC": "2"}
    assert any("exceeds 2^128-1" in m for m in failures(proof))


# ------------------------------------------------------------------------------------------------
# The fast paths take exactly the inputs the plain rules take

_PLAIN_AMOUNT = re.compile(r"([0-9]+)(?:\.([0-9]+))?")
AMOUNT_TEXT = st.one_of(
    st.text(alphabet="0123456789.-+eE _x١１²", max_size=45),
    st.integers(0, 2**129).map(str),
    st.builds(lambda w, f: f"{w}.{f}", st.integers(0, 10**30), st.integers(0, 10**30)),
    st.text(alphabet="0.", min_size=78, max_size=83),  # around the 80-character limit
)
AMOUNT_VALUE = st.one_of(AMOUNT_TEXT, st.integers(), st.none(), st.just([]))


def _plain_parse(text: str, scale: int) -> int | None:
    """parse_amount as the format states it: [0-9]+(.[0-9]+)?, at most `scale` decimals,
    at most 2^128-1; None where it must refuse."""
    match = _PLAIN_AMOUNT.fullmatch(text) if len(text) <= 80 else None
    if match is None or len(match.group(2) or "") > scale:
        return None
    amount = int(match.group(1)) * 10**scale + int((match.group(2) or "").ljust(scale, "0") or "0")
    return amount if amount <= 2**128 - 1 else None


@settings(max_examples=400, deadline=None)
@given(AMOUNT_TEXT, st.integers(0, 38))
def test_parse_amount_takes_exactly_plain_decimals(text: str, scale: int) -> None:
    expected = _plain_parse(text, scale)
    if expected is None:
        with pytest.raises(ValueError):
            por_v1.parse_amount(text, scale)
    else:
        assert por_v1.parse_amount(text, scale) == expected


@settings(max_examples=400, deadline=None)
@given(st.integers(0, 2**128 - 1), st.integers(0, 38))
def test_format_amount_is_the_exact_decimal(amount: int, scale: int) -> None:
    whole, fraction = divmod(amount, 10**scale)
    expected = f"{whole}.{fraction:0{scale}d}" if scale else str(amount)
    assert por_v1.format_amount(amount, scale) == expected


VECTOR_ASSETS = (por_v1.Asset("BTC", 8), por_v1.Asset("ETH", 18), por_v1.Asset("HKD", 0))


@settings(max_examples=400, deadline=None)
@given(
    st.dictionaries(st.sampled_from(["BTC", "ETH", "HKD", "XRP"]), AMOUNT_VALUE, max_size=4),
)
def test_balances_are_read_like_one_amount_at_a_time(amounts: dict[str, object]) -> None:
    """The inlined loop of _parse_vector agrees with the one-check-at-a-time reading: the same
    vector, or the same error naming the problem."""
    try:
        expected: object = por_v1._parse_vector_saying_why(amounts, VECTOR_ASSETS, "balances")
    except ProofError as error:
        expected = str(error)
    try:
        got: object = por_v1._parse_vector(amounts, VECTOR_ASSETS, "balances")
    except ProofError as error:
        got = str(error)
    assert got == expected


@pytest.mark.parametrize(
    "text",
    ["ab" * 32, "AB" * 32, "ab" * 31 + "a ", " a" + "b" * 62, "ab " * 21 + "a", "zz" * 32, "ab"],
)
def test_hashes_must_be_64_lowercase_hex_characters(text: str) -> None:
    if text == "ab" * 32:
        assert por_v1._parse_hash(text, "root") == bytes.fromhex(text)
    else:
        with pytest.raises(ProofError, match="root: expected 64 lowercase hex characters"):
            por_v1._parse_hash(text, "root")
