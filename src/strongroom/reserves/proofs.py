"""User proofs from an audit directory in O(log n): derive the user's tag, binary-search the
index, then read one sibling per level from the memory-mapped tree file."""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

from strongroom.errors import DomainError, NotFound, invariant
from strongroom.reserves import audit as files
from strongroom.reserves.audit import Audit
from strongroom.reserves.merkle import HASH_BYTES, AuditKey, dec
from strongroom.reserves.treefile import IndexFile, TreeFile, TreeFileError
from strongroom_verify import por_v1

MAX_OPEN_AUDITS = 8


class NotInAudit(NotFound):
    code = "not_in_audit"


class ProofUnavailable(DomainError):
    code = "proof_unavailable"
    status = 503


class ProofServer:
    """Serves proofs for one built audit directory (thread-safe: reads only)."""

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

    def close(self) -> None:
        self.tree.close()
        self.index.close()

    def leaves_of(self, account_id: str) -> tuple[bytes, list[int]] | None:
        """The account's user salt and its leaf indices (piece order), or None."""
        try:
            salt = por_v1.derive_user_salt(self.key.secret, account_id)
            tag = por_v1.user_tag(salt, account_id)
        except ValueError:
            return None
        indices = self.index.lookup(tag)
        if indices is None:
            return None
        for piece, index in enumerate(indices):  # the index only has a 16-byte key: confirm
            record = self.tree.node(0, index)
            vector = dec(record[HASH_BYTES:], self._n_assets)
            if por_v1.leaf_hash(tag, piece, vector) != record[:HASH_BYTES]:
                return None
        return salt, indices

    def proof(self, account_id: str) -> dict[str, Any]:
        """The proof JSON of POR_FORMATS §1; raises NotInAudit for an account not in it."""
        found = self.leaves_of(account_id)
        if found is None:
            raise NotInAudit(
                f"account {account_id[:64]!r} is not in audit {self.audit.audit_id}",
                audit_id=self.audit.audit_id,
            )
        salt, indices = found
        leaves = [self._leaf(piece, index) for piece, index in enumerate(indices)]
        balances = [0] * self._n_assets
        for index in indices:
            for position, amount in enumerate(
                dec(self.tree.node(0, index)[HASH_BYTES:], self._n_assets)
            ):
                balances[position] += amount
        return {
            "format": por_v1.FORMAT,
            "audit_id": self.audit.audit_id,
            "assets": self._assets_json,
            "root": self.audit.root.hex(),
            "totals": self.audit.totals_text(),
            "leaf_count": self.audit.leaf_count,
            "account_id": account_id,
            "user_salt": salt.hex(),
            "balances": self._text(balances),
            "leaves": leaves,
        }

    def _text(self, vector: list[int]) -> dict[str, str]:
        return {
            asset.code: por_v1.format_amount(amount, asset.scale)
            for asset, amount in zip(self.audit.assets, vector, strict=True)
        }

    def _leaf(self, piece: int, index: int) -> dict[str, Any]:
        record = self.tree.node(0, index)
        path = []
        for level in range(self.tree.shape.height):
            sibling = self.tree.node(level, (index >> level) ^ 1)
            path.append(
                {
                    "hash": sibling[:HASH_BYTES].hex(),
                    "balances": self._text(dec(sibling[HASH_BYTES:], self._n_assets)),
                }
            )
        return {
            "index": index,
            "piece": piece,
            "balances": self._text(dec(record[HASH_BYTES:], self._n_assets)),
            "path": path,
        }


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
