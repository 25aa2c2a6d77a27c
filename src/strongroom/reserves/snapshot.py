"""Snapshots of user liabilities (R-POR-1): from a CSV/Parquet file or from the ledger.

A file has the columns ``account_id,asset,balance`` (one row per account and asset; balances are
plain decimals with at most the asset's scale). Everything is checked before anything is built:
a refused snapshot raises ``SnapshotError`` listing the offending rows (the first 20, with their
line numbers) and nothing is written. Validation and conversion are vectorised with Arrow and
numpy, so ten million accounts load in seconds and no Python object is kept per row.

Line numbers count physical lines (the header is line 1); a quoted value spanning lines shifts
them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from strongroom.db import is_postgres
from strongroom.errors import DomainError, invariant
from strongroom.gifts import service as gifts
from strongroom.ledger.domain import total_minor
from strongroom.ledger.models import Account
from strongroom.money import format_amount
from strongroom.reserves.merkle import AMOUNT_BYTES, MAX_ASSETS, U8, IdColumn
from strongroom_verify import por_v1
from strongroom_verify.por_v1 import Asset

COLUMNS = ("account_id", "asset", "balance")
MAX_REPORTED = 20
MAX_ACCOUNT_ID_BYTES = por_v1.MAX_ACCOUNT_ID_BYTES
MAX_INTEGER_DIGITS = 39  # 2^128 - 1 has 39 digits
MAX_BALANCE_CHARS = por_v1.MAX_AMOUNT_CHARS
LEDGER_BATCH_ROWS = 50_000
_PLAIN_DECIMAL = r"^[0-9]+(\.[0-9]+)?$"
_ASSET_CODE = re.compile(r"[A-Za-z0-9._-]{1,32}")


@dataclass(frozen=True, slots=True)
class Problem:
    where: str
    account_id: str | None
    asset: str | None
    message: str

    def __str__(self) -> str:
        who = f"account {self.account_id!r}" if self.account_id is not None else "row"
        asset = f" {self.asset}" if self.asset else ""
        return f"{self.where}: {who}{asset}: {self.message}"


class SnapshotError(DomainError):
    """The snapshot was refused; ``problems`` lists the first offending rows."""

    code = "invalid_snapshot"
    status = 422

    def __init__(self, message: str, problems: Sequence[Problem] = (), total: int = 0) -> None:
        super().__init__(message, problems=[str(p) for p in problems[:MAX_REPORTED]], total=total)
        self.problems = list(problems[:MAX_REPORTED])
        self.total = total

    def report(self) -> str:
        lines = [self.message]
        lines += [f"  {problem}" for problem in self.problems]
        if self.total > len(self.problems):
            lines.append(f"  ... and {self.total - len(self.problems)} more")
        return "\n".join(lines)


class AccountIds:
    """Account ids kept as one Arrow string array (no Python object per account)."""

    def __init__(self, array: Any) -> None:
        self._array = array

    def __len__(self) -> int:
        return len(self._array)

    def chunk(self, start: int, stop: int) -> list[str]:
        return cast(list[str], self._array.slice(start, stop - start).to_pylist())

    def column(self, start: int, stop: int) -> IdColumn:
        """Ids ``start .. stop - 1`` as UTF-8 bytes and offsets, straight from Arrow's buffers."""
        part = self._array.slice(start, stop - start)
        if isinstance(part, pa.ChunkedArray):
            part = part.combine_chunks()
        width = {pa.string(): np.int32, pa.large_string(): np.int64}.get(part.type)
        if width is None or part.null_count:
            return IdColumn.of(cast(list[str], part.to_pylist()))
        _, offset_buffer, data_buffer = part.buffers()
        offsets = np.frombuffer(offset_buffer, dtype=width)[
            part.offset : part.offset + len(part) + 1
        ].astype(np.int64)
        first, last = int(offsets[0]), int(offsets[-1])
        data = b"" if data_buffer is None else data_buffer.slice(first, last - first).to_pybytes()
        return IdColumn(data, offsets - first)

    def __getitem__(self, position: int) -> str:
        return cast(str, self._array[position].as_py())

    def take(self, positions: npt.NDArray[np.int64]) -> list[str]:
        return cast(list[str], self._array.take(pa.array(positions)).to_pylist())


@dataclass(frozen=True)
class Snapshot:
    """Every account with a non-zero balance: ids, one enc(B) row each, and the totals."""

    assets: tuple[Asset, ...]
    account_ids: AccountIds
    balances: U8
    totals: tuple[int, ...]

    def __post_init__(self) -> None:
        invariant(1 <= len(self.assets) <= MAX_ASSETS, "asset count out of range")
        invariant(
            self.balances.shape == (len(self.account_ids), AMOUNT_BYTES * len(self.assets)),
            "one enc(B) row per account",
        )

    @property
    def count(self) -> int:
        return len(self.account_ids)

    @classmethod
    def from_mapping(
        cls, scales: Mapping[str, int], balances: Mapping[str, Mapping[str, int]]
    ) -> Snapshot:
        """From ``{account_id: {asset: amount_minor}}`` (tests, small tools): validated as a
        file would be."""
        ids, codes, amounts = [], [], []
        for account_id, row in balances.items():
            for code, amount in row.items():
                scale = scales.get(code, 0)
                ids.append(account_id)
                codes.append(code)
                amounts.append(format_amount(amount, scale))
        locations = np.arange(1, len(ids) + 1, dtype=np.int64)
        return assemble(
            pa.array(ids, pa.string()),
            pa.array(codes, pa.string()),
            pa.array(amounts, pa.string()),
            locations,
            "row",
            scales,
        )

    def as_mapping(self) -> dict[str, tuple[int, ...]]:
        width = AMOUNT_BYTES * len(self.assets)
        rows = self.balances.tobytes()
        return {
            account_id: tuple(
                int.from_bytes(
                    rows[n * width + AMOUNT_BYTES * a : n * width + AMOUNT_BYTES * (a + 1)], "big"
                )
                for a in range(len(self.assets))
            )
            for n, account_id in enumerate(self.account_ids.chunk(0, self.count))
        }


# ------------------------------------------------------------------------------------------------
# Readers


def read_file(path: Path, scales: Mapping[str, int]) -> Snapshot:
    """A CSV (``.csv``) or Parquet (``.parquet``/``.pq``) snapshot file."""
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        return _read_parquet(path, scales)
    if suffix in (".csv", ".txt"):
        return _read_csv(path, scales)
    raise SnapshotError(f"{path.name}: expected a .csv or .parquet file")


def _read_csv(path: Path, scales: Mapping[str, int]) -> Snapshot:
    import pyarrow.csv as pcsv

    bad_rows: list[tuple[int, str]] = []

    def on_invalid(row: Any) -> str:
        bad_rows.append((int(row.number), f"expected 3 columns, found {row.actual_columns}"))
        return "skip"

    try:
        table = pcsv.read_csv(
            path,
            read_options=pcsv.ReadOptions(use_threads=False),
            parse_options=pcsv.ParseOptions(
                invalid_row_handler=on_invalid, ignore_empty_lines=False
            ),
            convert_options=pcsv.ConvertOptions(
                column_types={name: pa.string() for name in COLUMNS},
                include_columns=list(COLUMNS),
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
    except (pa.ArrowInvalid, pa.ArrowKeyError, KeyError, OSError) as error:
        raise SnapshotError(
            f"{path.name}: cannot read it as CSV with the header account_id,asset,balance: {error}"
        ) from error
    skipped = {line for line, _ in bad_rows}
    lines = np.arange(2, 2 + table.num_rows + len(skipped), dtype=np.int64)
    if skipped:
        lines = lines[~np.isin(lines, np.fromiter(skipped, dtype=np.int64))]
    extra = [Problem(f"line {line}", None, None, message) for line, message in bad_rows]
    return assemble(
        table["account_id"].combine_chunks(),
        table["asset"].combine_chunks(),
        table["balance"].combine_chunks(),
        lines,
        "line",
        scales,
        extra,
    )


def _read_parquet(path: Path, scales: Mapping[str, int]) -> Snapshot:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path, columns=list(COLUMNS))
    except (pa.ArrowInvalid, pa.ArrowKeyError, KeyError, OSError) as error:
        raise SnapshotError(
            f"{path.name}: cannot read it as Parquet with the columns "
            f"account_id, asset, balance: {error}"
        ) from error
    columns = []
    for name in COLUMNS:
        column = table[name].combine_chunks()
        kind = column.type
        usable = (
            pa.types.is_string(kind)
            or pa.types.is_large_string(kind)
            or (name == "balance" and (pa.types.is_integer(kind) or pa.types.is_decimal(kind)))
        )
        if not usable:
            raise SnapshotError(
                f"{path.name}: column {name} has type {kind}; expected text"
                + (", an integer or a decimal" if name == "balance" else "")
            )
        if pa.types.is_decimal(kind):  # Arrow would write 1E-8; write plain decimals instead
            texts = [None if v is None else format(v, "f") for v in column.to_pylist()]
            columns.append(pa.array(texts, pa.string()))
        else:
            columns.append(column.cast(pa.string()))
    rows = np.arange(1, table.num_rows + 1, dtype=np.int64)
    return assemble(columns[0], columns[1], columns[2], rows, "row", scales)


def from_ledger(*, session: Session, scales: Mapping[str, int]) -> Snapshot:
    """One consistent snapshot of what the operator owes each user, per asset: every user
    wallet's posted total (credits - debits) plus what the user's open gifts still hold in the
    gift escrow (``gifts.service.owed_in_escrow``).

    What is counted, and why: the liability is the **posted** total, so money held by a pending
    transfer (a withdrawal the payout connector has not paid yet) is still the user's: it is
    owed until the payout is posted, and comes back if it is voided. Money a gift moved into the
    operator's escrow is still owed too, to its sender until someone claims it (then it is in
    the claimer's wallet) or it goes back; it is attributed to the sender's account, so the
    sender's proof shows it and the totals do not shrink while a gift is open. The escrow
    accounts' totals must equal the open gifts' remaining amounts, or the snapshot is refused.

    Runs in the session's transaction, which must not have started yet: on PostgreSQL it is made
    REPEATABLE READ READ ONLY so every row comes from the same moment.
    """
    if is_postgres(session):
        session.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"))
    escrow = _escrow_owed(session)
    query = (
        select(
            Account.id,
            Account.owner_id,
            Account.asset,
            Account.credits_posted,
            Account.debits_posted,
        )
        .where(Account.owner_type == "user", Account.kind == "wallet")
        .order_by(Account.id)
        .execution_options(yield_per=LEDGER_BATCH_ROWS)
    )
    ids: list[Any] = []
    codes: list[Any] = []
    amounts: list[Any] = []
    locations: list[npt.NDArray[np.int64]] = []
    result = session.execute(query)
    for batch in result.partitions(LEDGER_BATCH_ROWS):
        ids.append(pa.array([row.owner_id for row in batch], pa.string()))
        codes.append(pa.array([row.asset for row in batch], pa.string()))
        amounts.append(
            pa.array(
                [
                    format_amount(
                        total_minor(
                            credits_posted=row.credits_posted, debits_posted=row.debits_posted
                        )
                        + escrow.pop((row.owner_id, row.asset), 0),
                        scales.get(row.asset, 0),
                    )
                    for row in batch
                ],
                pa.string(),
            )
        )
        locations.append(np.array([row.id for row in batch], dtype=np.int64))
    if not ids:
        raise SnapshotError("the ledger has no user wallets")
    if escrow:  # a sender always has a wallet of the gift's asset: the gift came from it
        (sender_id, asset), _ = next(iter(escrow.items()))
        raise SnapshotError(f"gift escrow owed to {sender_id!r} in {asset}, who has no wallet")
    return assemble(
        pa.concat_arrays(ids),
        pa.concat_arrays(codes),
        pa.concat_arrays(amounts),
        np.concatenate(locations),
        "ledger account",
        scales,
    )


def _escrow_owed(session: Session) -> dict[tuple[str, str], int]:
    """The open gifts' remaining amounts by (sender, asset), checked against the ledger's
    escrow accounts: if they differ, the snapshot cannot say whom the escrow is owed to."""
    owed = gifts.owed_in_escrow(session=session)
    by_asset: dict[str, int] = {}
    for (_sender_id, asset), amount in owed.items():
        by_asset[asset] = by_asset.get(asset, 0) + amount
    held = {asset: total for asset, total in gifts.escrow_totals(session=session).items() if total}
    if by_asset != held:
        raise SnapshotError(
            f"the gift escrow holds {held} but the open gifts account for {by_asset}; "
            "nothing was written"
        )
    return owed


# ------------------------------------------------------------------------------------------------
# Validation and assembly (vectorised)


def _numpy_bool(array: Any) -> npt.NDArray[np.bool_]:
    values = array.fill_null(False).to_numpy(zero_copy_only=False)
    return cast(npt.NDArray[np.bool_], values.astype(np.bool_))


def _numpy_int(array: Any, fill: int) -> npt.NDArray[np.int64]:
    values = array.fill_null(fill).to_numpy(zero_copy_only=False)
    return cast(npt.NDArray[np.int64], values.astype(np.int64))


class _Checks:
    """Row masks of each problem, and the messages they produce."""

    def __init__(self, ids: Any, codes: Any, balances: Any, scales: Mapping[str, int]) -> None:
        self.ids, self.codes, self.balances = ids, codes, balances
        id_bytes = _numpy_int(pc.binary_length(ids), 0)
        self.bad_id = (id_bytes == 0) | (id_bytes > MAX_ACCOUNT_ID_BYTES)
        known_codes = sorted(code for code in scales if _valid_code(code))
        self.code_list = known_codes
        self.asset_position = _numpy_int(
            pc.index_in(codes, value_set=pa.array(known_codes, pa.string())), -1
        )
        self.bad_asset = self.asset_position < 0
        text = balances.fill_null("")
        self.malformed = ~_numpy_bool(pc.match_substring_regex(text, _PLAIN_DECIMAL)) | (
            _numpy_int(pc.utf8_length(text), 0) > MAX_BALANCE_CHARS
        )
        self.negative = _numpy_bool(pc.starts_with(text, "-"))
        length = _numpy_int(pc.utf8_length(text), 0)
        dot = _numpy_int(pc.find_substring(text, "."), -1)
        self.decimals = np.where(dot >= 0, length - dot - 1, 0)
        self.integer_digits = np.where(dot >= 0, dot, length)
        scale_table = np.array([scales[c] for c in known_codes] + [0], dtype=np.int64)
        self.scale = scale_table[self.asset_position]  # -1 picks the trailing 0
        self.too_precise = ~self.malformed & ~self.bad_asset & (self.decimals > self.scale)
        self.too_large = ~self.malformed & (self.integer_digits > MAX_INTEGER_DIGITS)
        self.duplicate_of = np.full(len(ids), -1, dtype=np.int64)

    def usable(self) -> npt.NDArray[np.bool_]:
        bad: npt.NDArray[np.bool_] = (
            self.bad_id | self.bad_asset | self.malformed | self.too_precise | self.too_large
        )
        return ~bad

    def message(self, row: int, where: _Where) -> str:
        parts: list[str] = []
        identifier = self.ids[row].as_py()
        balance = self.balances[row].as_py()
        if identifier is None or self.bad_id[row]:
            parts.append("account id must be 1 to 64 UTF-8 bytes")
        if self.bad_asset[row]:
            parts.append("unknown asset")
        if balance is None or balance == "":
            parts.append("balance is missing")
        elif self.negative[row]:
            parts.append(f"negative balance {balance[:40]!r}")
        elif self.malformed[row]:
            parts.append(f"balance {balance[:40]!r} is not a plain decimal number")
        elif self.too_precise[row]:
            parts.append(f"balance {balance!r} has more than {self.scale[row]} decimals")
        elif self.too_large[row]:
            parts.append(f"balance {balance[:40]!r} is over 2^128-1 minor units")
        if self.duplicate_of[row] >= 0:
            parts.append(f"duplicate of {where[int(self.duplicate_of[row])]}")
        return "; ".join(parts)


class _Where:
    """Where a row came from, for the report: "line 12", "row 3", "ledger account 7"."""

    def __init__(self, label: str, locations: npt.NDArray[np.int64]) -> None:
        self.label = label
        self.locations = locations

    def __getitem__(self, row: int) -> str:
        return f"{self.label} {int(self.locations[row])}"


def _valid_code(code: str) -> bool:
    return _ASSET_CODE.fullmatch(code) is not None


def assemble(
    ids: Any,
    codes: Any,
    balances: Any,
    locations: npt.NDArray[np.int64],
    label: str,
    scales: Mapping[str, int],
    extra: Sequence[Problem] = (),
) -> Snapshot:
    """Validate rows (Arrow string arrays) and build the snapshot, or raise SnapshotError."""
    rows = len(ids)
    invariant(len(codes) == rows == len(balances) == len(locations), "columns differ in length")
    checks = _Checks(ids, codes, balances, scales)
    where = _Where(label, locations)
    words = _minor_units(checks, balances)
    account_index, dictionary = _encode_ids(ids)
    _mark_duplicates(checks, account_index, len(checks.code_list))
    bad = ~checks.usable() | (checks.duplicate_of >= 0)
    _refuse_if_bad(checks, bad, where, extra)
    present = sorted({int(p) for p in np.unique(checks.asset_position)})
    if not present:
        raise SnapshotError("the snapshot holds no balances")
    code_to_column = np.full(len(checks.code_list) + 1, -1, dtype=np.int64)
    code_to_column[present] = np.arange(len(present))
    assets = tuple(Asset(checks.code_list[p], int(scales[checks.code_list[p]])) for p in present)
    grid = np.zeros((len(dictionary), len(assets), 2), dtype=np.uint64)
    grid[account_index, code_to_column[checks.asset_position], 0] = words[:, 1]
    grid[account_index, code_to_column[checks.asset_position], 1] = words[:, 0]
    keep = grid.reshape(len(dictionary), -1).any(axis=1)
    grid = grid[keep]
    totals = _totals(grid, assets)
    enc_rows = grid.astype(">u8").view(np.uint8).reshape(len(grid), AMOUNT_BYTES * len(assets))
    kept_ids = dictionary.filter(pa.array(keep))
    return Snapshot(assets, AccountIds(kept_ids), np.ascontiguousarray(enc_rows), totals)


def _minor_units(checks: _Checks, balances: Any) -> npt.NDArray[np.uint64]:
    """(rows, 4) little-endian 64-bit words of each balance in minor units (0 for bad rows)."""
    words = np.zeros((len(balances), 4), dtype=np.uint64)
    convertible = ~(checks.malformed | checks.too_precise | checks.too_large | checks.bad_asset)
    for position in range(len(checks.code_list)):
        rows = np.flatnonzero(convertible & (checks.asset_position == position))
        if not len(rows):
            continue
        scale = int(checks.scale[rows[0]])
        decimals = pc.cast(balances.take(pa.array(rows)), pa.decimal256(76, scale))
        raw = np.frombuffer(decimals.buffers()[1], dtype="<u8")
        raw = raw[decimals.offset * 4 : (decimals.offset + len(rows)) * 4].reshape(len(rows), 4)
        words[rows] = raw
    overflow = (words[:, 2] != 0) | (words[:, 3] != 0)
    checks.too_large |= overflow
    words[overflow] = 0
    return words


def _encode_ids(ids: Any) -> tuple[npt.NDArray[np.int64], Any]:
    if len(ids) == 0:
        return np.zeros(0, dtype=np.int64), pa.array([], pa.string())
    encoded = pc.dictionary_encode(ids.fill_null(""))
    return _numpy_int(encoded.indices, 0), encoded.dictionary


def _mark_duplicates(checks: _Checks, account_index: npt.NDArray[np.int64], codes: int) -> None:
    key = account_index * (codes + 1) + np.where(
        checks.asset_position >= 0, checks.asset_position, codes
    )
    order = np.argsort(key, kind="stable")
    ordered = key[order]
    repeats = np.flatnonzero(ordered[1:] == ordered[:-1])
    if not len(repeats):
        return
    # The first row of each run of equal keys is the original; the rest point back at it.
    first_of_run = np.maximum.accumulate(
        np.where(np.r_[True, ordered[1:] != ordered[:-1]], np.arange(len(ordered)), 0)
    )
    later = order[repeats + 1]
    checks.duplicate_of[later] = order[first_of_run[repeats + 1]]


def _refuse_if_bad(
    checks: _Checks, bad: npt.NDArray[np.bool_], where: _Where, extra: Sequence[Problem]
) -> None:
    bad_rows = np.flatnonzero(bad)
    total = len(bad_rows) + len(extra)
    if not total:
        return
    problems = [
        Problem(
            where[int(row)],
            checks.ids[int(row)].as_py(),
            checks.codes[int(row)].as_py(),
            checks.message(int(row), where),
        )
        for row in bad_rows[:MAX_REPORTED]
    ]
    problems = sorted([*problems, *extra], key=_line_order)[:MAX_REPORTED]
    raise SnapshotError(
        f"snapshot refused: {total} bad row(s); nothing was written", problems, total
    )


def _line_order(problem: Problem) -> tuple[str, int]:
    label, _, number = problem.where.rpartition(" ")
    return label, int(number) if number.isdigit() else 0


def _totals(grid: npt.NDArray[np.uint64], assets: tuple[Asset, ...]) -> tuple[int, ...]:
    """Exact per-asset sums: 32-bit limbs summed in uint64 (no overflow below 2^32 rows)."""
    totals: list[int] = []
    chunk = 1 << 24
    for column, asset in enumerate(assets):
        total = 0
        for start in range(0, len(grid), chunk):
            high = grid[start : start + chunk, column, 0]
            low = grid[start : start + chunk, column, 1]
            for shift, word in ((64, high), (0, low)):
                total += int((word & 0xFFFFFFFF).sum(dtype=np.uint64)) << shift
                total += int((word >> np.uint64(32)).sum(dtype=np.uint64)) << (shift + 32)
        if total > por_v1.U128_MAX:
            raise SnapshotError(f"the total of {asset.code} exceeds 2^128-1 minor units")
        totals.append(total)
    return tuple(totals)
