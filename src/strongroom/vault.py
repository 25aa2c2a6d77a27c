"""Secrets at rest, sealed with the vault key (R-SEC-11): TOTP seeds, KYC documents (bytes).

A ``Keyring`` seals with AES-256-GCM under a key derived (HKDF-SHA256) from
``STRONGROOM_VAULT_KEY`` and opens with that key or any retired one
(``STRONGROOM_VAULT_RETIRED_KEYS``), so keys can rotate: each sealed value is stored with the
id of the key that sealed it (``Sealed.key_id``), a fingerprint of the derived key (never the
key itself). Each value is bound to where it is stored (``context``, e.g. the table, column and
row id) as associated data: a ciphertext copied to another row, or a flipped byte, does not
open (``VaultError``).

Without a vault key, outside production, the keyring uses a development key derived from the
secret key (its id starts with ``dev-``), so a developer's database works without one; in
production there is no such fallback: the keyring cannot seal or open anything, and
``Settings.check_production`` refuses to start without a vault key in the first place.

A base module (standard library and ``cryptography`` only), below settings, so that any
domain may use it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

FORMAT: Final = "v1"
NONCE_BYTES: Final = 12
KEY_BYTES: Final = 32
KEY_ID_HEX_CHARS: Final = 12
RETIRED_KEYS_MAX: Final = 16
SEALED_MAX_CHARS: Final = 4096
SALT: Final = b"strongroom-vault-v1"
DEVELOPMENT_PREFIX: Final = "dev-"


class VaultError(Exception):
    """A sealed value that does not open (unknown key id, altered, moved) or a keyring
    without a key. A bug or an attack, never a user's mistake: not a ``DomainError``."""


@dataclass(frozen=True, slots=True)
class Sealed:
    """What is stored: the key's id and ``v1.<base64url(nonce | ciphertext | tag)>``."""

    key_id: str
    ciphertext: str


def _derive(material: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=SALT, info=info).derive(material)


def _key_id(key: bytes, prefix: str) -> str:
    digest = hashlib.sha256(b"strongroom vault key id\x00" + key).hexdigest()
    return prefix + digest[:KEY_ID_HEX_CHARS]


@dataclass(frozen=True, slots=True)
class Keyring:
    """The current key (None: sealing is refused) and every key that may open, by id."""

    current_id: str | None
    keys: dict[str, bytes] = field(repr=False)

    def seal(self, plaintext: str, *, context: str) -> Sealed:
        if self.current_id is None:
            raise VaultError("no vault key: set STRONGROOM_VAULT_KEY")
        nonce = secrets.token_bytes(NONCE_BYTES)
        body = AESGCM(self.keys[self.current_id]).encrypt(
            nonce, plaintext.encode(), _associated(context, self.current_id)
        )
        text = base64.urlsafe_b64encode(nonce + body).decode().rstrip("=")
        return Sealed(key_id=self.current_id, ciphertext=f"{FORMAT}.{text}")

    def open(self, sealed: Sealed, *, context: str) -> str:
        key = self.keys.get(sealed.key_id)
        if key is None:
            raise VaultError(f"no vault key with id {sealed.key_id!r}: is a retired key missing?")
        version, _, text = sealed.ciphertext.partition(".")
        if version != FORMAT or not text or len(sealed.ciphertext) > SEALED_MAX_CHARS:
            raise VaultError("not a sealed value of this vault")
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
            plain = AESGCM(key).decrypt(
                raw[:NONCE_BYTES], raw[NONCE_BYTES:], _associated(context, sealed.key_id)
            )
            return plain.decode()
        except (binascii.Error, InvalidTag, ValueError) as error:
            raise VaultError("a sealed value was altered or moved: it does not open") from error

    def seal_bytes(self, plaintext: bytes, *, context: str) -> tuple[str, bytes]:
        """A file's bytes sealed: ``(key id, nonce | ciphertext | tag)``, bound to ``context``
        (e.g. a document's id) as associated data, as ``seal`` binds a value to its row."""
        if self.current_id is None:
            raise VaultError("no vault key: set STRONGROOM_VAULT_KEY")
        nonce = secrets.token_bytes(NONCE_BYTES)
        body = AESGCM(self.keys[self.current_id]).encrypt(
            nonce, plaintext, _associated(context, self.current_id)
        )
        return self.current_id, nonce + body

    def open_bytes(self, key_id: str, blob: bytes, *, context: str) -> bytes:
        """The plaintext of ``seal_bytes``; ``VaultError`` when the key is unknown or the
        bytes were altered, cut short or belong to another context."""
        key = self.keys.get(key_id)
        if key is None:
            raise VaultError(f"no vault key with id {key_id!r}: is a retired key missing?")
        if len(blob) < NONCE_BYTES + 16:
            raise VaultError("a sealed file is cut short: it does not open")
        try:
            return AESGCM(key).decrypt(
                blob[:NONCE_BYTES], blob[NONCE_BYTES:], _associated(context, key_id)
            )
        except (InvalidTag, ValueError) as error:
            raise VaultError("a sealed file was altered or moved: it does not open") from error

    def is_current(self, sealed: Sealed) -> bool:
        return sealed.key_id == self.current_id


def _associated(context: str, key_id: str) -> bytes:
    return f"{FORMAT}\x00{key_id}\x00{context}".encode()


def keyring(
    vault_key: str,
    retired_keys: Iterable[str] = (),
    *,
    secret_key: str,
    production: bool,
) -> Keyring:
    """The keyring of the settings: ``vault_key`` seals (outside production, a key derived from
    ``secret_key`` when it is empty), ``retired_keys`` only open."""
    keys: dict[str, bytes] = {}
    retired = list(retired_keys)[:RETIRED_KEYS_MAX]
    for material in retired:
        key = _derive(material.encode(), b"aes-256-gcm")
        keys[_key_id(key, "k")] = key
    current_id: str | None = None
    if vault_key:
        key = _derive(vault_key.encode(), b"aes-256-gcm")
        current_id = _key_id(key, "k")
        keys[current_id] = key
    elif not production:
        key = _derive(secret_key.encode(), b"development vault key")
        current_id = _key_id(key, DEVELOPMENT_PREFIX)
        keys[current_id] = key
    return Keyring(current_id=current_id, keys=keys)
