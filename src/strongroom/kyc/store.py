"""Where sealed documents live: a small ``DocumentStore`` interface (put, get, delete) and the
filesystem implementation used by default. An S3-compatible store is the obvious second one: it
only has to keep bytes under a key; sealing and opening stay in the service, so no store ever
sees a plaintext byte."""

from __future__ import annotations

import os
import re
import secrets
from pathlib import Path
from typing import Final, Protocol

KEY_PATTERN: Final = re.compile(r"[a-f0-9]{32}")


class DocumentStore(Protocol):
    def put(self, key: str, data: bytes) -> None: ...

    def get(self, key: str) -> bytes:
        """The bytes under ``key``; ``KeyError`` when there are none."""
        ...

    def delete(self, key: str) -> None:
        """Remove ``key``; nothing when it is absent."""
        ...


def new_key() -> str:
    return secrets.token_hex(16)


class FilesystemStore:
    """One file per key under ``root/<first two characters>/<key>``, written to a temporary
    name and renamed (a reader never sees half a file), readable by the owner only."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, key: str) -> Path:
        if KEY_PATTERN.fullmatch(key) is None:
            raise KeyError(key)
        return self.root / key[:2] / key

    def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        partial = path.with_name(f".{key}.{secrets.token_hex(4)}.part")
        descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(partial, path)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise KeyError(key) from None

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)
