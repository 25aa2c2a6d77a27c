"""``strongroom por ...``: build an audit, print a proof, publish, verify."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from strongroom.errors import DomainError
from strongroom.reserves import audit as files
from strongroom.reserves.builder import BuildOptions, build
from strongroom.reserves.snapshot import Snapshot, SnapshotError
from strongroom.settings import Settings, get_settings

por_app = typer.Typer(
    help="Proof of reserves: build, prove, publish, verify.", no_args_is_help=True
)
# Rich reads what it prints as markup ("[red]") and emoji codes (":smile:"): every text that is
# not our own markup (a message, a path, an id, a cell) goes through escape(), and no emoji.
console = Console(emoji=False)
err = Console(stderr=True, emoji=False)

DatabaseUrl = Annotated[
    str | None, typer.Option("--database-url", help="overrides STRONGROOM_DATABASE_URL")
]


class RichProgress:
    """The builder's progress, as Rich bars (one per phase)."""

    def __init__(self, progress: Progress) -> None:
        self._progress = progress
        self._task: object | None = None

    def phase(self, name: str, total: int) -> None:
        self._task = self._progress.add_task(name, total=max(total, 1))

    def advance(self, amount: int) -> None:
        if self._task is not None:
            self._progress.advance(self._task, amount)  # type: ignore[arg-type]


def _settings(database_url: str | None) -> Settings:
    if database_url:
        os.environ["STRONGROOM_DATABASE_URL"] = database_url
        get_settings.cache_clear()
    return get_settings()


def _scales(extra: list[str]) -> dict[str, int]:
    scales = {asset.code: asset.scale for asset in get_settings().asset_registry().all()}
    for item in extra:
        code, _, scale = item.partition(":")
        if not code or not scale.isdigit() or int(scale) > 38:
            raise typer.BadParameter(f"--asset takes CODE:SCALE, got {item!r}")
        scales[code] = int(scale)
    return scales


def _load_snapshot(
    input_file: Path | None, from_db: bool, database_url: str | None, scales: dict[str, int]
) -> Snapshot:
    from strongroom.reserves import snapshot

    if (input_file is None) == (not from_db):
        raise typer.BadParameter("give exactly one of --input FILE or --from-db")
    if input_file is not None:
        with console.status(escape(f"reading {input_file}")):
            return snapshot.read_file(input_file, scales)
    from strongroom import db

    settings = _settings(database_url)
    factory = db.make_session_factory(db.make_engine(settings.database_url))
    with console.status("reading the ledger (one consistent snapshot)"), factory() as session:
        try:
            return snapshot.from_ledger(session=session, scales=scales)
        finally:
            session.rollback()


@por_app.command("build")
def build_command(
    out: Annotated[Path, typer.Option("--out", help="directory for root.json, tree.bin, ...")],
    input_file: Annotated[
        Path | None, typer.Option("--input", help="CSV or Parquet account_id,asset,balance")
    ] = None,
    from_db: Annotated[bool, typer.Option("--from-db", help="snapshot the ledger")] = False,
    audit_id: Annotated[str | None, typer.Option(help="default: the UTC time")] = None,
    secret_file: Annotated[
        Path | None, typer.Option(help="64 hex digits; default: a new random secret")
    ] = None,
    pieces: Annotated[int, typer.Option(min=1, max=16, help="pieces per user")] = 2,
    engine: Annotated[str, typer.Option(help="local or spark")] = "local",
    spark_master: Annotated[str, typer.Option(help="Spark master URL")] = "local[*]",
    workers: Annotated[int, typer.Option(min=0, help="local processes; 0 = all cores")] = 0,
    asset: Annotated[
        list[str] | None, typer.Option(help="extra asset CODE:SCALE (repeatable)")
    ] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Snapshot liabilities and build the strongroom-por-v1 tree into DIR."""
    started = time.perf_counter()
    try:
        snapshot = _load_snapshot(input_file, from_db, database_url, _scales(asset or []))
        secret = files.read_secret(secret_file) if secret_file else files.new_secret()
        options = BuildOptions(
            pieces=pieces,
            workers=workers,
            engine=engine,  # type: ignore[arg-type]
            spark_master=spark_master,
        )
        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
        )
        with Progress(*columns, console=err) as bars:
            result = build(
                snapshot,
                out,
                secret=secret,
                audit_id=audit_id,
                options=options,
                progress=RichProgress(bars),
            )
    except SnapshotError as error:
        err.print(f"[red]{escape(error.report())}[/red]")
        raise typer.Exit(2) from error
    except DomainError as error:
        err.print(f"[red]refused:[/red] {escape(error.code)}: {escape(error.message)}")
        raise typer.Exit(2) from error
    table = Table(title=escape(f"audit {result.audit_id}"))
    table.add_column("asset")
    table.add_column("liabilities", justify="right")
    for code, total in result.totals_text().items():
        table.add_row(escape(code), escape(total))
    console.print(table)
    console.print(f"root {result.root.hex()}")
    console.print(
        escape(
            f"{snapshot.count} accounts, {result.leaf_count} leaves, height "
            f"{result.height}, {time.perf_counter() - started:.1f} s → {out}"
        )
    )


@por_app.command("proof")
def proof_command(
    account_id: Annotated[str, typer.Argument(help="the account id in the audit")],
    tree: Annotated[Path, typer.Option("--tree", help="the audit directory")],
    secret_file: Annotated[Path | None, typer.Option(help="default: DIR/secret.key")] = None,
) -> None:
    """Print one account's inclusion proof (JSON) to stdout."""
    from strongroom.reserves.proofs import ProofServer

    try:
        proof = ProofServer(tree, secret_file).proof(account_id)
    except DomainError as error:
        err.print(f"[red]{escape(error.code)}[/red]: {escape(error.message)}")
        raise typer.Exit(1) from error
    typer.echo(json.dumps(proof, indent=2))


@por_app.command("publish")
def publish_command(
    tree: Annotated[Path, typer.Option("--tree", help="the audit directory")],
    reserves: Annotated[
        Path | None, typer.Option(help="CSV asset,amount,source,evidence_sha256,as_of")
    ] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Record the audit's root and totals (and the reserves) for the API."""
    from strongroom import db
    from strongroom.reserves import service
    from strongroom.reserves.proofs import ProofServer

    settings = _settings(database_url)
    factory = db.make_session_factory(db.make_engine(settings.database_url))
    try:
        ProofServer(tree).close()  # the directory is complete and consistent
        result = files.read_root(tree)
        lines = service.read_reserves(reserves, result.assets) if reserves else None
        with db.unit_of_work(factory) as session:
            row = service.publish(
                session=session, audit=result, tree_dir=str(tree.resolve()), reserves=lines
            )
            view = service.summary(session=session, audit=row)
    except DomainError as error:
        err.print(f"[red]refused:[/red] {escape(error.code)}: {escape(error.message)}")
        for problem in error.details.get("problems", []):
            err.print(escape(f"  {problem}"))
        raise typer.Exit(2) from error
    table = Table(title=escape(f"audit {view['audit_id']} published"))
    for column in ("asset", "liabilities", "reserves", "ratio"):
        table.add_column(column, justify="right")
    for code, total in view["totals"].items():
        cells = (code, total, view["reserves"][code], view["ratios"][code] or "-")
        table.add_row(*(escape(str(cell)) for cell in cells))
    console.print(table)
    console.print(escape(f"root {view['root']}"))


@por_app.command(
    "verify", context_settings={"allow_extra_args": True, "ignore_unknown_options": True}
)
def verify_command(
    files_to_check: Annotated[
        list[str],
        typer.Argument(metavar="FILE...", help="proof files (and options of strongroom-verify)"),
    ],
) -> None:
    """Verify proof files offline (the same as ``strongroom-verify``)."""
    from strongroom_verify.cli import main

    raise typer.Exit(main(files_to_check))
