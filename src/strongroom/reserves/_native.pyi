"""Type stub of the C kernel (_native.c); merkle.py holds the Python reference of each function."""

from typing_extensions import Buffer

OPENSSL_VERSION: str

def account_leaves_into(
    secret: Buffer,
    ids: Buffer,
    offsets: Buffer,
    balances: Buffer,
    n_assets: int,
    pieces: int,
    tags: Buffer,
    keys: Buffer,
    vectors: Buffer | None,
) -> None: ...
def padding_leaves_into(
    secret: Buffer, first: int, count: int, tags: Buffer, keys: Buffer
) -> None: ...
def leaf_records(tags: Buffer, pieces: Buffer, vectors: Buffer, width: int) -> bytes: ...
def leaf_records_by_id(
    leaf_ids: Buffer, tags: Buffer, pad_tags: Buffer, vectors: Buffer, pieces: int, width: int
) -> bytes: ...
def leaf_records_by_id_into(
    leaf_ids: Buffer,
    tags: Buffer,
    pad_tags: Buffer,
    vectors: Buffer,
    pieces: int,
    width: int,
    out: Buffer,
) -> None: ...
def leaf_records_of_into(
    secret: Buffer,
    leaf_ids: Buffer,
    tags: Buffer,
    balances: Buffer,
    pieces: int,
    padding: int,
    width: int,
    out: Buffer,
) -> None: ...
def parents(children: Buffer, n_assets: int) -> bytes | None: ...
def parents_into(children: Buffer, n_assets: int, out: Buffer) -> bool: ...
def sort_keys(keys: Buffer, stride: int, order: Buffer, part: int, parts: int) -> bool: ...
def index_entries(accounts: Buffer, tags: Buffer, leaves: Buffer, pieces: int) -> bytes: ...
def backends() -> list[str]: ...
def backend(name: str | None = None, /) -> str: ...
