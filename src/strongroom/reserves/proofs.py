"""User proofs from an audit directory in O(log n): derive the user's tag, look it up in the
index (an interpolation search), then read one sibling per level from the memory-mapped tree
file.

A proof is what a server answers per request, so its inner loop does only what it must: one
slice of the map per level, the amounts decoded in one ``struct`` call per record, no range
checks on values that a u128 field cannot exceed. The nodes of the top levels are shared by
every proof: their JSON-ready text is kept (a bounded number of them) and copied into each proof.
"""

from __future__ import annotations

import hashlib
import struct
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

from strongroom.errors import DomainError, NotFound, invariant
from strongroom.reserves import audit as files
from strongroom.reserves.audit import Audit
from strongroom.reserves.merkle import HASH_BYTES, AuditKey
from strongroom.reserves.treefile import IndexFile, TreeFile, TreeFileError
from strongroom_verify import por_v1

MAX_OPEN_AUDITS = 8
CACHED_LEVELS = 12
"""The top levels whose nodes' text is kept: at most 2^13 nodes, a few MiB."""
_LEAF_PREFIX = por_v1.LEAF_PREFIX
_PIECE = struct.Struct(">I")


class NotInAudit(NotFound):
    code = "not_in_audit"


class ProofUnavailable(DomainError):
    code = "proof_unavailable"
    status = 503


def amount_text(amount: int, scale: int) -> str:
    """``por_v1.format_amount`` for an amount known to be in 0..2^128-1 (read from a u128
    field): the same text, without the checks."""
    digits = str(amount)
    if scale == 0:
        return digits
    if len(digits) <= scale:
        digits = digits.rjust(scale + 1, "0")
    return f"{digits[:-scale]}.{digits[-scale:]}"


class ProofServer:
    """Serves proofs for one built audit directory (thread-safe: reads only; the cache of top
    nodes is filled with values that are the same whichever thread computes them)."""

    def __init__(self, directory: Path, secret_file: Path | None = None) -> None:
        try:
            self.audit: Audit = files.read_root(directory)
            self.tree = TreeFile(directory / files.TREE_FILE)
            self.index = IndexFile(directory / files.INDEX_FILE)
        except TreeFileError as error:
            raise ProofUnavailable(f"the audit at {directory} cannot be read: {error}") from error
        self.key = AuditKey(files.read_secret(secret_file or directory / files.SECRET_FILE))
        header = self.tree.header
        if (
            header.assets != self.audit.assets
            or self.tree.shape.leaf_count != self.audit.leaf_count
            or self.tree.root()[:HASH_BYTES] != self.audit.root
        ):
            raise ProofUnavailable(f"{directory}: root.json does not match tree.bin")
        self._n_assets = len(self.audit.assets)
        self._assets_json = [{"code": a.code, "scale": a.scale} for a in self.audit.assets]
        self._columns = tuple((a.code, a.scale) for a in self.audit.assets)
        self._amounts = struct.Struct(">" + "QQ" * self._n_assets)
        self._root_hex = self.audit.root.hex()
        self._totals_text = self.audit.totals_text()
        self._height = self.tree.shape.height
        self._cached_from = max(0, self._height - CACHED_LEVELS)
        self._top: dict[tuple[int, int], tuple[str, dict[str, str]]] = {}

    def close(self) -> None:
        self.tree.close()
        self.index.close()

    def leaves_of(self, account_id: str) -> tuple[bytes, list[int]] | None:
        """The account's user salt and its leaf indices (piece order), or None."""
        found = self._find(account_id)
        return None if found is None else (found[0], found[1])

    def _find(self, account_id: str) -> tuple[bytes, list[int], list[bytes]] | None:
        """Salt, leaf indices and leaf records of the account, or None. The index holds only a
        16-byte tag prefix, so each leaf is confirmed: its hash must be the account's."""
        try:
            encoded = account_id.encode("utf-8")
        except UnicodeEncodeError:
            return None
        if not 1 <= len(encoded) <= por_v1.MAX_ACCOUNT_ID_BYTES:
            return None
        salt = self.key.user_salt(account_id)
        tag = hashlib.sha256(por_v1.USER_DOMAIN + b"\x00" + salt + encoded).digest()
        indices = self.index.lookup(tag)
        if indices is None:
            return None
        records = []
        for piece, index in enumerate(indices):
            record = self.tree.node(0, index)
            message = _LEAF_PREFIX + tag + _PIECE.pack(piece) + record[HASH_BYTES:]
            if hashlib.sha256(message).digest() != record[:HASH_BYTES]:
                return None
            records.append(record)
        return salt, indices, records

    def proof(self, account_id: str) -> dict[str, Any]:
        """The proof JSON of POR_FORMATS §1; raises NotInAudit for an account not in it."""
        found = self._find(account_id)
        if found is None:
            raise NotInAudit(
                f"account {account_id[:64]!r} is not in audit {self.audit.audit_id}",
                audit_id=self.audit.audit_id,
            )
        salt, indices, records = found
        balances = [0] * self._n_assets
        leaves = []
        for piece, (index, record) in enumerate(zip(indices, records, strict=True)):
            amounts = self._vector(record)
            for position, amount in enumerate(amounts):
                balances[position] += amount
            leaves.append(
                {
                    "index": index,
                    "piece": piece,
                    "balances": self._text(amounts),
                    "path": self._path(index),
                }
            )
        return {
            "format": por_v1.FORMAT,
            "audit_id": self.audit.audit_id,
            "assets": [dict(asset) for asset in self._assets_json],
            "root": self._root_hex,
            "totals": dict(self._totals_text),
            "leaf_count": self.audit.leaf_count,
            "account_id": account_id,
            "user_salt": salt.hex(),
            "balances": self._text(balances),
            "leaves": leaves,
        }

    def _vector(self, record: bytes) -> list[int]:
        words = self._amounts.unpack_from(record, HASH_BYTES)
        return [(words[n] << 64) | words[n + 1] for n in range(0, len(words), 2)]

    def _text(self, amounts: list[int]) -> dict[str, str]:
        return {
            code: amount_text(amount, scale)
            for (code, scale), amount in zip(self._columns, amounts, strict=True)
        }

    def _step(self, record: bytes) -> tuple[str, dict[str, str]]:
        return record[:HASH_BYTES].hex(), self._text(self._vector(record))

    def _path(self, index: int) -> list[dict[str, Any]]:
        """The path of POR_FORMATS §1 for leaf ``index``: read below the cached levels, copied
        from the cache above."""
        cached_from = self._cached_from
        steps = [self._step(record) for record in self.tree.siblings(index, cached_from)]
        top = self._top
        for level in range(cached_from, self._height):
            key = (level, (index >> level) ^ 1)
            step = top.get(key)
            if step is None:
                step = top[key] = self._step(self.tree.node(*key))
            steps.append(step)
        return [{"hash": digest, "balances": dict(text)} for digest, text in steps]


class ProofServers:
    """A few open audits, by directory (the API keeps one of these)."""

    def __init__(self, limit: int = MAX_OPEN_AUDITS) -> None:
        invariant(limit >= 1, "limit must be positive")
        self._limit = limit
        self._open: OrderedDict[Path, ProofServer] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, directory: Path) -> ProofServer:
        with self._lock:
            server = self._open.get(directory)
            if server is not None:
                self._open.move_to_end(directory)
                return server
        if not (directory / files.ROOT_FILE).exists():
            raise ProofUnavailable("this audit's tree is not available on this server")
        server = ProofServer(directory)
        with self._lock:
            self._open[directory] = server
            while len(self._open) > self._limit:
                self._open.popitem(last=False)  # closed when no request holds it any more
        return server
