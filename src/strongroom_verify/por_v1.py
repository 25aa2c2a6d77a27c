"""`strongroom-por-v1`: the hashing primitives (shared with the builder) and the proof verifier.

Byte layouts (POR_FORMATS.md §1; `H` = SHA-256, `‖` = concatenation):

    enc(B)    = u128be(B[0]) ‖ … ‖ u128be(B[n-1])          (assets sorted by code)
    user_salt = HMAC-SHA256(audit_secret, "strongroom-por-v1/salt" ‖ account_id)
    user_tag  = H("strongroom-por-v1/user" ‖ 0x00 ‖ user_salt ‖ account_id)
    leaf      = H(0x00 ‖ user_tag ‖ u32be(piece) ‖ enc(B_piece))
    node      = H(0x01 ‖ h_left ‖ enc(B_left) ‖ h_right ‖ enc(B_right)),  B_node = B_left + B_right

A node commits to both children's vectors, so a prover cannot show two users different sibling
balances under the same root (the Ji-Chalkias attack), and every amount is an unsigned 128-bit
integer, so no negative balance can be hidden in a sum.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

from strongroom_verify.jsonio import as_dict, as_int, as_list, as_str, field, lower_hex
from strongroom_verify.result import ProofError, Report, Result, run_guarded

__all__ = [
    "FORMAT",
    "MAX_ASSETS",
    "MAX_HEIGHT",
    "MAX_PIECES",
    "U128_MAX",
    "Asset",
    "Vector",
    "add_vectors",
    "derive_user_salt",
    "enc",
    "format_amount",
    "leaf_hash",
    "node_hash",
    "parse_amount",
    "user_tag",
    "verify_proof",
]

FORMAT = "strongroom-por-v1"
HASH_BYTES = 32
SALT_BYTES = 32
MIN_AUDIT_SECRET_BYTES = 16
U128_MAX = (1 << 128) - 1
U32_MAX = (1 << 32) - 1
MAX_ACCOUNT_ID_BYTES = 64
MAX_PIECES = 16
MAX_HEIGHT = 48  # 2^48 leaves: far beyond any exchange, and it bounds every loop below
MAX_ASSETS = 256
MAX_SCALE = 38  # 10^38 < 2^128: one whole unit always fits
MAX_AMOUNT_CHARS = 80
USER_DOMAIN = b"strongroom-por-v1/user"
SALT_DOMAIN = b"strongroom-por-v1/salt"
LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"

Vector = tuple[int, ...]

_ASSET_CODE = re.compile(r"[A-Za-z0-9._-]{1,32}")


@dataclass(frozen=True)
class Asset:
    code: str
    scale: int


# ------------------------------------------------------------------------------------------------
# Primitives


def enc(vector: Sequence[int]) -> bytes:
    """u128be of each amount, in asset order. Raises ValueError for a negative or too large one."""
    for amount in vector:
        if isinstance(amount, bool) or not 0 <= amount <= U128_MAX:
            raise ValueError(f"amount {amount} is outside 0..2^128-1")
    return b"".join(amount.to_bytes(16, "big") for amount in vector)


def _account_id_bytes(account_id: str) -> bytes:
    encoded = account_id.encode("utf-8")  # a lone surrogate raises UnicodeEncodeError (ValueError)
    if not 1 <= len(encoded) <= MAX_ACCOUNT_ID_BYTES:
        raise ValueError(f"account_id must be 1..{MAX_ACCOUNT_ID_BYTES} UTF-8 bytes")
    return encoded


def _require_hash(value: bytes, name: str) -> None:
    if len(value) != HASH_BYTES:
        raise ValueError(f"{name} must be {HASH_BYTES} bytes")


def user_tag(user_salt: bytes, account_id: str) -> bytes:
    """H("strongroom-por-v1/user" ‖ 0x00 ‖ user_salt ‖ account_id)."""
    if len(user_salt) != SALT_BYTES:
        raise ValueError(f"user_salt must be {SALT_BYTES} bytes")
    payload = USER_DOMAIN + b"\x00" + user_salt + _account_id_bytes(account_id)
    return hashlib.sha256(payload).digest()


def leaf_hash(user_tag: bytes, piece_index: int, vector: Sequence[int]) -> bytes:
    """H(0x00 ‖ user_tag ‖ u32be(piece_index) ‖ enc(vector)). A padding leaf passes 32 random
    bytes as user_tag, piece 0 and a zero vector."""
    _require_hash(user_tag, "user_tag")
    if isinstance(piece_index, bool) or not 0 <= piece_index <= U32_MAX:
        raise ValueError("piece_index must fit in a u32")
    payload = LEAF_PREFIX + user_tag + piece_index.to_bytes(4, "big") + enc(vector)
    return hashlib.sha256(payload).digest()


def node_hash(
    h_left: bytes, b_left: Sequence[int], h_right: bytes, b_right: Sequence[int]
) -> bytes:
    """H(0x01 ‖ h_left ‖ enc(b_left) ‖ h_right ‖ enc(b_right))."""
    _require_hash(h_left, "h_left")
    _require_hash(h_right, "h_right")
    if len(b_left) != len(b_right):
        raise ValueError("balance vectors differ in length")
    payload = NODE_PREFIX + h_left + enc(b_left) + h_right + enc(b_right)
    return hashlib.sha256(payload).digest()


def add_vectors(left: Sequence[int], right: Sequence[int]) -> Vector:
    """Elementwise sum; a sum over 2^128-1 raises ValueError (it would be invalid in a tree)."""
    if len(left) != len(right):
        raise ValueError("balance vectors differ in length")
    total = tuple(a + b for a, b in zip(left, right, strict=True))
    for position, amount in enumerate(total):
        if amount > U128_MAX:
            raise ValueError(f"sum exceeds 2^128-1 at asset position {position}")
    return total


def derive_user_salt(audit_secret: bytes, account_id: str) -> bytes:
    """HMAC-SHA256(audit_secret, "strongroom-por-v1/salt" ‖ account_id): derivable again, so it
    need not be stored."""
    if len(audit_secret) < MIN_AUDIT_SECRET_BYTES:
        raise ValueError(f"audit_secret must be at least {MIN_AUDIT_SECRET_BYTES} bytes")
    message = SALT_DOMAIN + _account_id_bytes(account_id)
    return hmac.new(audit_secret, message, hashlib.sha256).digest()


def parse_amount(text: str, scale: int) -> int:
    """Parse "12.5" with scale 8 as 1250000000. Raises ValueError (saying why) for a sign, an
    exponent, whitespace, more decimals than the scale, or a value over 2^128-1."""
    if not isinstance(text, str):
        raise ValueError("amount must be a string")
    if isinstance(scale, bool) or not 0 <= scale <= MAX_SCALE:
        raise ValueError(f"scale must be 0..{MAX_SCALE}")
    # [0-9]+(\.[0-9]+)? without a regex: an ASCII string's only digits are 0-9.
    whole, dot, fraction = text.partition(".")
    if (
        len(text) > MAX_AMOUNT_CHARS
        or not (whole.isascii() and whole.isdigit())
        or (dot and not (fraction.isascii() and fraction.isdigit()))
    ):
        raise ValueError(_amount_problem(text))
    if len(fraction) > scale:
        raise ValueError(f"{text!r} has more decimals than the scale {scale}")
    amount = int(whole + fraction + "0" * (scale - len(fraction)))
    if amount > U128_MAX:
        raise ValueError(f"{text!r} is over 2^128-1 minor units")
    return amount


def _amount_problem(text: str) -> str:
    shown = repr(text[:MAX_AMOUNT_CHARS])
    if len(text) > MAX_AMOUNT_CHARS:
        return f"{shown}... is too long"
    if text and text[0] in "+-":
        return f"{shown} has a sign"
    if any(char.isspace() for char in text):
        return f"{shown} contains whitespace"
    if "e" in text.lower():
        return f"{shown} has an exponent"
    return f"{shown} is not a plain decimal amount"


def format_amount(amount: int, scale: int) -> str:
    """1250000000 with scale 8 → "12.50000000" (always `scale` decimals)."""
    if isinstance(amount, bool) or not 0 <= amount <= U128_MAX:
        raise ValueError("amount must be in 0..2^128-1")
    if isinstance(scale, bool) or not 0 <= scale <= MAX_SCALE:
        raise ValueError(f"scale must be 0..{MAX_SCALE}")
    digits = str(amount)
    if scale == 0:
        return digits
    if len(digits) <= scale:
        digits = digits.rjust(scale + 1, "0")
    return f"{digits[:-scale]}.{digits[-scale:]}"


# ------------------------------------------------------------------------------------------------
# Reading a proof


class _Step(NamedTuple):  # a tuple: one is built per path step, and compared with ==
    hash: bytes
    vector: Vector


@dataclass(frozen=True)
class _Leaf:
    name: str
    index: int
    piece: int
    vector: Vector
    path: tuple[_Step, ...]


@dataclass(frozen=True)
class _Proof:
    assets: tuple[Asset, ...]
    root: bytes
    totals: Vector
    leaf_count: int
    height: int
    account_id: str
    user_salt: bytes
    balances: Vector
    leaves: tuple[_Leaf, ...]


def _parse_assets(value: object) -> tuple[Asset, ...]:
    items = as_list(value, "assets")
    if not 1 <= len(items) <= MAX_ASSETS:
        raise ProofError(f"assets: expected 1..{MAX_ASSETS} assets")
    assets: list[Asset] = []
    for position, item in enumerate(items):
        where = f"assets[{position}]"
        entry = as_dict(item, where)
        code = as_str(field(entry, "code", where), f"{where}.code")
        scale = as_int(field(entry, "scale", where), f"{where}.scale")
        if not _ASSET_CODE.fullmatch(code):
            raise ProofError(f"{where}.code: {code[:40]!r} is not an asset code")
        if not 0 <= scale <= MAX_SCALE:
            raise ProofError(f"{where}.scale: expected 0..{MAX_SCALE}")
        if assets and code <= assets[-1].code:
            raise ProofError(f"{where}.code: assets must be sorted by code, without repeats")
        assets.append(Asset(code, scale))
    return tuple(assets)


def _parse_vector(value: object, assets: tuple[Asset, ...], where: str) -> Vector:
    """The amounts of a balances object, in asset order. The loop is ``parse_amount`` inlined
    for the usual case (exactly the audit's assets, each a valid amount string); anything else
    goes to ``_parse_vector_saying_why``, which raises the error that names the problem."""
    amounts = as_dict(value, where)
    if len(amounts) == len(assets):
        vector = []
        for asset in assets:
            text = amounts.get(asset.code)
            if type(text) is not str or len(text) > MAX_AMOUNT_CHARS:
                break
            whole, dot, fraction = text.partition(".")
            digits = whole + fraction
            if (
                not whole
                or (dot and not fraction)
                or len(fraction) > asset.scale
                or not (digits.isascii() and digits.isdigit())
            ):
                break
            if len(fraction) < asset.scale:
                digits += "0" * (asset.scale - len(fraction))
            amount = int(digits)
            if amount > U128_MAX:
                break
            vector.append(amount)
        else:
            return tuple(vector)
    return _parse_vector_saying_why(amounts, assets, where)


def _parse_vector_saying_why(
    amounts: dict[str, object], assets: tuple[Asset, ...], where: str
) -> Vector:
    """``_parse_vector`` one check at a time: raises the ProofError that names the problem."""
    unknown = sorted(set(amounts) - {asset.code for asset in assets})
    if unknown:
        raise ProofError(f"{where}: {unknown[0][:40]!r} is not one of the audit's assets")
    vector: list[int] = []
    for asset in assets:
        text = as_str(field(amounts, asset.code, where), f"{where}.{asset.code}")
        try:
            vector.append(parse_amount(text, asset.scale))
        except ValueError as error:
            raise ProofError(f"{where}.{asset.code}: {error}") from None
    return tuple(vector)


def _parse_hash(value: object, where: str) -> bytes:
    if type(value) is str and len(value) == 2 * HASH_BYTES:  # the usual case, without a regex
        try:
            raw = bytes.fromhex(value)
        except ValueError:
            raw = b""
        if raw.hex() == value:  # so: lowercase, no whitespace
            return raw
    return bytes.fromhex(lower_hex(as_str(value, where), where, chars=2 * HASH_BYTES))


def _parse_height(proof: dict[str, object]) -> tuple[int, int]:
    leaf_count = as_int(field(proof, "leaf_count", "proof"), "leaf_count")
    is_power_of_two = leaf_count >= 2 and leaf_count & (leaf_count - 1) == 0
    if not is_power_of_two or leaf_count > 1 << MAX_HEIGHT:
        raise ProofError(f"leaf_count: {leaf_count} is not a power of two in 2..2^{MAX_HEIGHT}")
    height = leaf_count.bit_length() - 1
    if "height" in proof and as_int(proof["height"], "height") != height:
        raise ProofError(f"height: {proof['height']} is not log2(leaf_count) = {height}")
    return leaf_count, height


def _parse_leaf(value: object, position: int, assets: tuple[Asset, ...]) -> _Leaf:
    where = f"leaves[{position}]"
    entry = as_dict(value, where)
    index = as_int(field(entry, "index", where), f"{where}.index")
    piece = as_int(field(entry, "piece", where), f"{where}.piece")
    if index < 0:
        raise ProofError(f"{where}.index: must not be negative")
    if not 0 <= piece < MAX_PIECES:
        raise ProofError(f"{where}.piece: expected 0..{MAX_PIECES - 1}")
    vector = _parse_vector(field(entry, "balances", where), assets, f"{where}.balances")
    steps = as_list(field(entry, "path", where), f"{where}.path")
    if len(steps) > MAX_HEIGHT:
        raise ProofError(f"{where}.path: more than {MAX_HEIGHT} steps")
    path: list[_Step] = []
    for number, step in enumerate(steps):
        step_where = f"{where}.path[{number}]"
        step_entry = as_dict(step, step_where)
        step_hash = _parse_hash(field(step_entry, "hash", step_where), f"{step_where}.hash")
        step_balances = field(step_entry, "balances", step_where)
        path.append(
            _Step(step_hash, _parse_vector(step_balances, assets, f"{step_where}.balances"))
        )
    name = f"leaf {position} (index {index}, piece {piece})"
    return _Leaf(name, index, piece, vector, tuple(path))


def _parse_identity(proof: dict[str, object]) -> tuple[str, bytes]:
    account_id = as_str(field(proof, "account_id", "proof"), "account_id")
    try:
        _account_id_bytes(account_id)
    except ValueError as error:
        raise ProofError(f"account_id: {error}") from None
    salt_text = as_str(field(proof, "user_salt", "proof"), "user_salt")
    user_salt = bytes.fromhex(lower_hex(salt_text, "user_salt", chars=2 * SALT_BYTES))
    return account_id, user_salt


def _parse_proof(obj: object) -> _Proof:
    proof = as_dict(obj, "proof")
    if field(proof, "format", "proof") != FORMAT:
        raise ProofError(f"format: expected {FORMAT!r}")
    as_str(field(proof, "audit_id", "proof"), "audit_id")
    assets = _parse_assets(field(proof, "assets", "proof"))
    leaf_count, height = _parse_height(proof)
    account_id, user_salt = _parse_identity(proof)
    leaves = as_list(field(proof, "leaves", "proof"), "leaves")
    if not 1 <= len(leaves) <= MAX_PIECES:
        raise ProofError(f"leaves: expected 1..{MAX_PIECES} pieces")
    return _Proof(
        assets=assets,
        root=_parse_hash(field(proof, "root", "proof"), "root"),
        totals=_parse_vector(field(proof, "totals", "proof"), assets, "totals"),
        leaf_count=leaf_count,
        height=height,
        account_id=account_id,
        user_salt=user_salt,
        balances=_parse_vector(field(proof, "balances", "proof"), assets, "balances"),
        leaves=tuple(_parse_leaf(leaf, n, assets) for n, leaf in enumerate(leaves)),
    )


# ------------------------------------------------------------------------------------------------
# Verifying it


@dataclass(frozen=True)
class _Folded:
    leaf: _Leaf
    nodes: tuple[tuple[bytes, Vector], ...]  # the leaf's own node at each level, leaf first


def verify_proof(obj: object) -> Result:
    """Verify a strongroom-por-v1 user proof (a parsed JSON object)."""
    report = Report(FORMAT)
    return run_guarded(report, lambda: _verify(obj, report))


def _verify(obj: object, report: Report) -> None:
    proof = _parse_proof(obj)
    report.balances = _formatted(proof.assets, proof.balances)
    report.root = proof.root.hex()
    report.totals = _formatted(proof.assets, proof.totals)
    tag = user_tag(proof.user_salt, proof.account_id)
    _check_pieces(proof, report)
    folded: list[_Folded] = []
    for leaf in proof.leaves:
        result = _fold_leaf(proof, tag, leaf, report)
        if result is not None:
            folded.append(result)
    _check_shared_nodes(folded, report)


def _formatted(assets: tuple[Asset, ...], vector: Vector) -> dict[str, str]:
    return {a.code: format_amount(v, a.scale) for a, v in zip(assets, vector, strict=True)}


def _check_pieces(proof: _Proof, report: Report) -> None:
    pieces = [leaf.piece for leaf in proof.leaves]
    indices = [leaf.index for leaf in proof.leaves]
    report.check(
        "pieces",
        len(set(pieces)) == len(pieces),
        f"piece indices repeat: {pieces}",
        f"{len(pieces)} pieces, indices distinct",
    )
    report.check(
        "leaf indices",
        len(set(indices)) == len(indices),
        f"leaf indices repeat: {indices}",
        "leaf indices distinct",
    )
    for position, asset in enumerate(proof.assets):
        pieces_sum = sum(leaf.vector[position] for leaf in proof.leaves)
        claimed = proof.balances[position]
        report.check(
            "pieces add up",
            pieces_sum == claimed,
            ""
            if pieces_sum == claimed
            else f"pieces do not add up to balances for {asset.code}: pieces sum to "
            f"{_format_any(pieces_sum, asset.scale)}, balances say "
            f"{format_amount(claimed, asset.scale)}",
            f"pieces add up to the balance for {asset.code}",
        )


def _format_any(amount: int, scale: int) -> str:
    return format_amount(amount, scale) if amount <= U128_MAX else f"{amount} minor units"


def _fold_leaf(proof: _Proof, tag: bytes, leaf: _Leaf, report: Report) -> _Folded | None:
    if not report.check(
        "leaf index",
        leaf.index < proof.leaf_count,
        f"{leaf.name}: index is not below leaf_count {proof.leaf_count}",
        f"{leaf.name}: index below leaf_count {proof.leaf_count}",
    ):
        return None
    if not report.check(
        "path length",
        len(leaf.path) == proof.height,
        f"{leaf.name}: path has {len(leaf.path)} steps, height is {proof.height}",
        f"{leaf.name}: path has {proof.height} steps, the tree's height",
    ):
        return None
    # node_hash and add_vectors, inlined: every amount was parsed into 0..2^128-1 and every hash
    # into 32 bytes, so only the sums need checking (and each vector is encoded once).
    own_hash, own_vector = leaf_hash(tag, leaf.piece, leaf.vector), leaf.vector
    own_encoded = _enc_in_range(own_vector)
    nodes = [(own_hash, own_vector)]
    for number, step in enumerate(leaf.path):
        total = tuple([a + b for a, b in zip(own_vector, step.vector, strict=True)])
        if max(total) > U128_MAX:
            overflow = _overflowing_asset(proof.assets, own_vector, step.vector)
            report.fail(
                "balance overflow",
                f"{leaf.name} path step {number}: the sum for {overflow} exceeds 2^128-1",
            )
            return None
        step_encoded = _enc_in_range(step.vector)
        if (leaf.index >> number) & 1 == 0:  # we are the left child, the sibling is on the right
            message = NODE_PREFIX + own_hash + own_encoded + step.hash + step_encoded
        else:
            message = NODE_PREFIX + step.hash + step_encoded + own_hash + own_encoded
        own_hash, own_vector = hashlib.sha256(message).digest(), total
        own_encoded = _enc_in_range(total)
        nodes.append((own_hash, own_vector))
    _check_root(proof, leaf, nodes[-1], report)
    return _Folded(leaf, tuple(nodes))


def _enc_in_range(vector: Vector) -> bytes:
    """``enc`` of a vector already known to be in 0..2^128-1."""
    return b"".join([amount.to_bytes(16, "big") for amount in vector])


def _overflowing_asset(assets: tuple[Asset, ...], left: Vector, right: Vector) -> str | None:
    for asset, a, b in zip(assets, left, right, strict=True):
        if a + b > U128_MAX:
            return asset.code
    return None


def _check_root(proof: _Proof, leaf: _Leaf, root: tuple[bytes, Vector], report: Report) -> None:
    computed_hash, computed_vector = root
    same_root = computed_hash == proof.root
    report.check(
        "root",
        same_root,
        ""
        if same_root
        else f"{leaf.name}: root mismatch: computed {computed_hash.hex()}, published "
        f"{proof.root.hex()}",
        f"{leaf.name}: root matches",
    )
    for asset, computed, published in zip(proof.assets, computed_vector, proof.totals, strict=True):
        report.check(
            "totals",
            computed == published,
            ""
            if computed == published
            else f"{leaf.name}: totals mismatch for {asset.code}: computed "
            f"{format_amount(computed, asset.scale)}, published "
            f"{format_amount(published, asset.scale)}",
            f"{leaf.name}: total for {asset.code} matches",
        )


def _check_shared_nodes(folded: list[_Folded], report: Report) -> None:
    """Two pieces of one user share their path above the level where their subtrees meet: there
    each must see the other's own node as its sibling. This names the step a tampered path breaks
    (the root check alone only says that something below it is wrong)."""
    for first_position, first in enumerate(folded):
        for second in folded[first_position + 1 :]:
            if first.leaf.index == second.leaf.index:
                continue
            meet = (first.leaf.index ^ second.leaf.index).bit_length() - 1
            for one, other in ((first, second), (second, first)):
                step = one.leaf.path[meet]
                report.check(
                    "shared nodes",
                    (step.hash, step.vector) == other.nodes[meet],
                    f"{one.leaf.name} path step {meet}: hash mismatch: the sibling is not "
                    f"{other.leaf.name}'s node",
                    f"{one.leaf.name} path step {meet}: the sibling is {other.leaf.name}'s node",
                )
            first_path, second_path = first.leaf.path, second.leaf.path
            first_name, second_name = first.leaf.name, second.leaf.name
            for number in range(meet + 1, len(first_path)):
                same = first_path[number] == second_path[number]
                report.check(
                    "shared nodes",
                    same,
                    ""
                    if same
                    else f"{second_name} path step {number}: hash mismatch: the sibling differs "
                    f"from {first_name}'s",
                    f"{second_name} path step {number}: same sibling as {first_name}",
                )
