"""The ``strongroom`` command (Typer). It calls services, never HTTP."""

from __future__ import annotations

import json
import os
import secrets
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import platformdirs
import typer
from rich.console import Console
from rich.markup import escape

from strongroom import db, worker
from strongroom.errors import DomainError
from strongroom.identity import service as identity
from strongroom.ledger import reports
from strongroom.reserves.cli import por_app
from strongroom.settings import ProductionRefused, Settings, get_settings

if TYPE_CHECKING:
    from strongroom.demo import Login
    from strongroom.identity.api_keys import ApiKey

app = typer.Typer(help="Strongroom: a stored-value wallet back office.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
admin_app = typer.Typer(help="Operator accounts and service keys.", no_args_is_help=True)
ledger_app = typer.Typer(help="Ledger checks and statements.", no_args_is_help=True)
emv_app = typer.Typer(help="EMVCo merchant-presented QR payloads.", no_args_is_help=True)
privacy_app = typer.Typer(help="Personal data of erased accounts.", no_args_is_help=True)
merchants_app = typer.Typer(help="Merchant settlement and payout batches.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(admin_app, name="admin")
app.add_typer(ledger_app, name="ledger")
app.add_typer(por_app, name="por")
app.add_typer(emv_app, name="emv")
app.add_typer(privacy_app, name="privacy")
app.add_typer(merchants_app, name="merchants")
# Rich reads what it prints as markup ("[red]") and emoji codes (":smile:"): every text that is
# not our own markup (a message, a path, a URL, an email) goes through escape(), and no emoji.
console = Console(emoji=False)
err = Console(stderr=True, emoji=False)

DatabaseUrl = Annotated[
    str | None, typer.Option("--database-url", help="overrides STRONGROOM_DATABASE_URL")
]


def _settings(database_url: str | None) -> Settings:
    if database_url:
        os.environ["STRONGROOM_DATABASE_URL"] = database_url
        get_settings.cache_clear()
    return get_settings()


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port")] = 8000,
    workers: Annotated[int, typer.Option(min=1, max=64, help="server processes")] = 1,
    access_log: Annotated[bool, typer.Option(help="log every request")] = True,
    database_url: DatabaseUrl = None,
) -> None:
    """Run the API server (migrations are applied first). Production (the default
    environment) refuses to start with demo settings: default secrets, the sandbox channel."""
    import uvicorn

    settings = _settings(database_url)
    where = f"environment: {settings.env}, database: {_database_kind(settings.database_url)}"
    typer.echo(f"Strongroom on http://{host}:{port}  ({where})")  # plain lines, never wrapped
    try:
        settings.check_production()
    except ProductionRefused as refused:
        typer.echo(f"strongroom serve: {refused}", err=True)
        raise typer.Exit(2) from None
    db.upgrade(db.make_engine(settings.database_url))
    uvicorn.run(
        "strongroom.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level="info",
        access_log=access_log,
    )


@app.command("worker")
def run_worker(
    interval: Annotated[float, typer.Option(min=0.1, help="seconds between sweeps")] = 1.0,
    database_url: DatabaseUrl = None,
) -> None:
    """Run background work: expire pending transfers whose timeout passed, delete idempotency
    keys past their retention, return the unclaimed rest of expired gifts to their senders, and
    deliver the email outbox over SMTP (unless STRONGROOM_MAIL__DELIVER=false)."""
    from strongroom.notify import delivery

    settings = _settings(database_url)
    factory = db.make_session_factory(db.make_engine(settings.database_url))
    mail_stop = delivery.start_thread(factory, settings) if settings.mail.deliver else None
    console.print("worker running; Ctrl-C stops it")
    try:
        worker.run(
            factory,
            threading.Event(),
            settings.idempotency,
            interval,
            settings.rate_limits,
            settings.funding,
            settings.gifts,
            settings,
        )
    except KeyboardInterrupt:
        console.print("stopped")
    finally:
        if mail_stop is not None:
            mail_stop.set()


@app.command()
def demo(
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port")] = 8000,
    database_url: DatabaseUrl = None,
    data_dir: Annotated[
        Path | None,
        typer.Option(help="where the demo keeps its files; default: the user's data directory"),
    ] = None,
    no_serve: Annotated[bool, typer.Option("--no-serve", help="populate, then exit")] = False,
) -> None:
    """A populated demo: a fresh SQLite database, a published proof-of-reserves audit, a local
    SMTP server that keeps every email; then serve the Lite app, the console and the API, and
    print their addresses and the logins."""
    from strongroom import demo as demo_data

    directory = (data_dir or Path(platformdirs.user_data_dir("strongroom"))).resolve()
    demo_data.fresh_directory(directory, database=database_url is None)
    url = database_url or f"sqlite:///{directory / demo_data.DATABASE_FILE}"
    os.environ["STRONGROOM_ENV"] = "demo"
    settings = _settings(url)
    if not settings.kyc.documents_dir:  # the demo's documents live with its other files
        documents = str(directory / demo_data.KYC_DOCUMENTS)
        settings.kyc = settings.kyc.model_copy(update={"documents_dir": documents})
    engine = db.make_engine(settings.database_url)
    db.upgrade(engine)
    with console.status("creating the demo's users, money and proof of reserves"):
        logins = demo_data.populate(
            db.make_session_factory(engine), settings, audits_dir=directory / demo_data.AUDITS
        )
    _print_logins(logins)
    base = f"http://{host}:{port}"
    # plain lines (never wrapped or folded): addresses and secrets are copied from here
    typer.echo(f"Lite app:          {base}/app")
    typer.echo(f"Operator console:  {base}/console")
    typer.echo(f"Merchant portal:   {base}/merchant")
    typer.echo(f"Proof of reserves: {base}/reserves/verify")
    typer.echo(f"API docs:          {base}/docs")
    typer.echo(f"Database:          {_safe(settings.database_url)}")
    if no_serve:
        return
    import uvicorn

    from strongroom.app import create_app
    from strongroom.web.console import inbox

    maildir = directory / demo_data.MAILDIR
    with demo_data.MailSink(maildir) as sink:
        typer.echo(
            f"Emails:            delivered over SMTP to {sink.host}:{sink.port} (this process), "
            f"kept in {maildir}; read them in the console's Inbox: {base}/console/inbox"
        )
        served = create_app(demo_data.smtp_settings(settings, sink, base))
        setattr(served.state, inbox.STATE_KEY, maildir)
        uvicorn.run(served, host=host, port=port, log_level="info")


def _print_logins(logins: list[Login]) -> None:
    typer.echo(
        "Demo logins (users sign in at /app, operators at /console, merchants at /merchant):"
    )
    width = max(len(login.email) for login in logins)
    for login in logins:
        if login.api_key is not None:  # a merchant terminal: its shop and X-Api-Key
            typer.echo(f"  {login.who:<18} {login.email:<{width}}  X-Api-Key {login.api_key}")
            continue
        line = f"  {login.who:<18} {login.email:<{width}}  password {login.password}"
        if login.totp_secret is not None:
            line += f"  TOTP secret {login.totp_secret}"
        typer.echo(line)
    typer.echo(
        "Operators also need a code: add the TOTP secret to an authenticator app, or run "
        "python -c \"import pyotp; print(pyotp.TOTP('SECRET').now())\""
    )


def _database_kind(url: str) -> str:
    """The database's kind and where it is, never a password: "postgresql on host:5432/name"
    or "sqlite at /path"."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    kind = parsed.get_backend_name()
    if kind == "sqlite":
        return f"sqlite at {parsed.database or ':memory:'}"
    return f"{kind} on {parsed.host or 'localhost'}:{parsed.port or 'default'}/{parsed.database}"


def _safe(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


@db_app.command("upgrade")
def db_upgrade(database_url: DatabaseUrl = None) -> None:
    """Apply every migration."""
    settings = _settings(database_url)
    db.upgrade(db.make_engine(settings.database_url))
    console.print(escape(f"database at head: {_safe(settings.database_url)}"))


@admin_app.command("create-operator")
def create_operator(
    email: Annotated[str, typer.Option(help="the operator's email")],
    role: Annotated[str, typer.Option(help="admin, kyc_reviewer, finance or support")],
    name: Annotated[str, typer.Option(help="display name")] = "Operator",
    password: Annotated[str | None, typer.Option(help="default: generated and printed")] = None,
    with_totp_secret: Annotated[
        bool,
        typer.Option(
            "--with-totp-secret",
            help="turn 2FA on at once and print its secret (operator endpoints need 2FA)",
        ),
    ] = False,
    database_url: DatabaseUrl = None,
) -> None:
    """Create an operator account with a role."""
    from strongroom.errors import DomainError

    settings = _settings(database_url)
    factory = db.make_session_factory(db.make_engine(settings.database_url))
    chosen = password or secrets.token_urlsafe(12)
    enrolled: identity.EnrolledTotp | None = None
    try:
        with db.unit_of_work(factory) as session:
            user = identity.register(
                session=session,
                email=email,
                password=chosen,
                name=name,
                region="HK",
                settings=settings.auth,
                operator_role=role,
            )
            if with_totp_secret:
                enrolled = identity.enrol_totp_now(
                    session=session, user=user, settings=settings.auth
                )
    except DomainError as error:
        err.print(f"[red]refused:[/red] {escape(error.code)}: {escape(error.message)}")
        raise typer.Exit(2) from error
    console.print(escape(f"operator {user.id} <{user.email}> role={role}"))
    if password is None:
        console.print(escape(f"password: {chosen}"))
    if enrolled is not None:  # plain lines, for scripts: "totp_secret: BASE32"
        typer.echo(f"totp_secret: {enrolled.secret}")
        typer.echo(f"otpauth_uri: {enrolled.otpauth_uri}")
        typer.echo(f"recovery_codes: {' '.join(enrolled.recovery_codes)}")


@admin_app.command("create-api-key")
def create_api_key(
    scope: Annotated[str, typer.Option(help="what the key may call: ledger (the raw ledger API)")],
    name: Annotated[str, typer.Option(help="what uses it, e.g. settlement-batch (unique)")],
    database_url: DatabaseUrl = None,
) -> None:
    """Make a service key (X-Api-Key) and print it once: only its hash is stored."""
    from strongroom.errors import DomainError
    from strongroom.identity import api_keys

    settings = _settings(database_url)
    factory = db.make_session_factory(db.make_engine(settings.database_url))
    try:
        with db.unit_of_work(factory) as session:
            issued = api_keys.create(session=session, name=name, scope=scope)
    except DomainError as error:
        err.print(f"[red]refused:[/red] {escape(error.code)}: {escape(error.message)}")
        raise typer.Exit(2) from error
    console.print(escape(f"api key {issued.id} name={issued.name} scope={issued.scope}"))
    err.print("shown once: store it now, it cannot be shown again (revoke-api-key to stop it)")
    typer.echo(f"api_key: {issued.key}")  # a plain line, for scripts


@admin_app.command("revoke-api-key")
def revoke_api_key(
    key_id: Annotated[str, typer.Argument(help="the key's id (key_...), from list-api-keys")],
    database_url: DatabaseUrl = None,
) -> None:
    """Stop a service key now (a revoked key is refused with 401 invalid_api_key)."""
    from strongroom.errors import DomainError
    from strongroom.identity import api_keys

    settings = _settings(database_url)
    factory = db.make_session_factory(db.make_engine(settings.database_url))
    try:
        with db.unit_of_work(factory) as session:
            row = api_keys.revoke(session=session, key_id=key_id)
            revoked_at = row.revoked_at
    except DomainError as error:
        err.print(f"[red]refused:[/red] {escape(error.code)}: {escape(error.message)}")
        raise typer.Exit(2) from error
    console.print(escape(f"api key {key_id} revoked at {revoked_at}"))


@admin_app.command("list-api-keys")
def list_api_keys(database_url: DatabaseUrl = None) -> None:
    """The service keys, newest first: id, name, scope, owner, first characters, made, revoked."""
    from strongroom.identity import api_keys

    settings = _settings(database_url)
    factory = db.make_session_factory(db.make_engine(settings.database_url))
    with db.unit_of_work(factory) as session:
        lines = [_key_line(row) for row in api_keys.listing(session=session)]
    typer.echo("id\tname\tscope\towner\tkey\tcreated\tstatus")
    for line in lines:
        typer.echo(line)


def _key_line(row: ApiKey) -> str:
    stamp = "%Y-%m-%dT%H:%M:%SZ"
    status = f"revoked {row.revoked_at:{stamp}}" if row.revoked_at else "live"
    return "\t".join(
        [
            row.id,
            row.name,
            row.scope,
            f"{row.owner_type}:{row.owner_id}",
            f"{row.key_prefix}...",
            f"{row.created_at:{stamp}}",
            status,
        ]
    )


@privacy_app.command("purge")
def privacy_purge(database_url: DatabaseUrl = None) -> None:
    """Delete the remaining per-user records of accounts erased longer ago than
    ``privacy.retention_days`` (default 7 years); the ledger journal and the audit log stay,
    pseudonymised (``privacy.service``). Safe to run daily, and from several hosts."""
    from strongroom.privacy import service as privacy

    settings = _settings(database_url)
    factory = db.make_session_factory(db.make_engine(settings.database_url))
    total = 0
    while True:
        with db.unit_of_work(factory) as session:
            purged = privacy.purge(session=session, settings=settings.privacy)
        total += len(purged)
        if not purged:
            break
    console.print(f"purged {total} erased account(s) past the retention period")


@ledger_app.command("check")
def ledger_check(database_url: DatabaseUrl = None) -> None:
    """Verify the ledger's invariants (R-LEDGER-5); exit 1 with a report if any fails."""
    settings = _settings(database_url)
    factory = db.make_session_factory(db.make_engine(settings.database_url))
    with console.status("checking the ledger"), factory() as session:
        report = reports.check(session=session)
    console.print(
        f"accounts {report.accounts}, transfers {report.transfers}, entries {report.entries}"
    )
    if report.ok:
        console.print(
            "[green]ledger OK[/green]: debits equal credits per asset, balances equal "
            "their entries, no account breaks its flags"
        )
        return
    err.print(f"[red]ledger check FAILED[/red]: {len(report.problems)} problem(s)")
    for problem in report.problems:
        err.print(escape(f"  - {problem}"))
    raise typer.Exit(1)


@ledger_app.command("reconcile")
def ledger_reconcile(
    as_json: Annotated[bool, typer.Option("--json", help="the report as JSON on stdout")] = False,
    database_url: DatabaseUrl = None,
) -> None:
    """The ledger against the connectors' records. Top-ups: every confirmed top-up has exactly
    one ledger transfer of the amount received to the user's wallet, and every top-up transfer
    a confirmed record. Payouts: every completed withdrawal has exactly one posted transfer of
    its amount (a failed one a void, a pending one neither), and every withdrawal transfer a
    record. Exit 1 with the breaks when there is one."""
    import json

    from rich.table import Table

    from strongroom.funding.reconcile import reconcile
    from strongroom.withdrawals.reconcile import reconcile_payouts

    settings = _settings(database_url)
    factory = db.make_session_factory(db.make_engine(settings.database_url))
    with factory() as session:
        report = reconcile(session=session, settings=settings)
        payouts = reconcile_payouts(session=session)
    ok = report.ok and payouts.ok
    if as_json:
        document = report.as_dict()
        document["ok"] = ok
        document["payouts"] = payouts.as_dict()
        typer.echo(json.dumps(document, indent=2))
    else:
        console.print(
            f"confirmed top-ups {report.confirmed_records}, top-up transfers "
            f"{report.topup_transfers}, sandbox top-ups (no record) {report.sandbox_transfers}"
        )
        console.print(
            f"bought purchases {report.bought_purchases}, purchase transfers "
            f"{report.purchase_transfers}"
        )
        console.print(
            f"withdrawals {payouts.withdrawals} (completed {payouts.completed}, failed "
            f"{payouts.failed}, pending {payouts.pending}), withdrawal transfers "
            f"{payouts.withdrawal_transfers}"
        )
        if ok:
            console.print("[green]reconciled[/green]: no break")
        if not report.ok:
            table = Table(title=f"{report.break_count} break(s)")
            table.add_column("kind", no_wrap=True)
            for column in ("top-up", "transfer", "detail"):
                table.add_column(column, overflow="fold")
            for found in report.breaks:
                table.add_row(
                    escape(found.kind),
                    escape(found.topup_id or "-"),
                    escape(found.transfer_id or "-"),
                    escape(found.detail),
                )
            err.print(table)
        if not payouts.ok:
            table = Table(title=f"{payouts.break_count} payout break(s)")
            table.add_column("kind", no_wrap=True)
            for column in ("withdrawal", "transfer", "detail"):
                table.add_column(column, overflow="fold")
            for item in payouts.breaks:
                table.add_row(
                    escape(item.kind),
                    escape(item.withdrawal_id or "-"),
                    escape(item.transfer_id or "-"),
                    escape(item.detail),
                )
            err.print(table)
    if not ok:
        raise typer.Exit(1)


@ledger_app.command("statement")
def ledger_statement(
    account_id: Annotated[int, typer.Argument(help="ledger account id")],
    database_url: DatabaseUrl = None,
) -> None:
    """Write an account's whole statement as CSV to stdout, oldest first."""
    settings = _settings(database_url)
    factory = db.make_session_factory(db.make_engine(settings.database_url))
    scales = {asset.code: asset.scale for asset in settings.asset_registry().all()}
    with factory() as session:
        for chunk in reports.statement_csv(
            session=session,
            account_ids=[account_id],
            scales=scales,
            max_rows=settings.ledger.export_rows_max,
        ):
            typer.echo(chunk, nl=False)


@emv_app.command("decode")
def emv_decode(payload: Annotated[str, typer.Argument(help="the QR code's text")]) -> None:
    """Print a payload's fields as JSON; exit 1 on a bad CRC or a malformed TLV."""
    from strongroom import emv

    try:
        decoded = emv.decode(payload.strip())
    except emv.EmvError as error:
        typer.echo(f"strongroom emv decode: {error.code}: {error.message}", err=True)
        raise typer.Exit(1) from None
    typer.echo(json.dumps(emv.payload_to_json(decoded), ensure_ascii=False, indent=2))


@emv_app.command("encode")
def emv_encode(
    file: Annotated[Path, typer.Argument(help='JSON: {"fields": [...]} as decode prints it')],
) -> None:
    """Print the payload of a JSON file's fields, with its CRC (a CRC field in the file is
    ignored); exit 1 on fields that do not make a payload."""
    from strongroom import emv

    try:
        document = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        typer.echo(f"strongroom emv encode: cannot read {file}: {error}", err=True)
        raise typer.Exit(1) from None
    try:
        typer.echo(emv.encode(emv.fields_from_json(document)))
    except emv.EmvError as error:
        typer.echo(f"strongroom emv encode: {error.code}: {error.message}", err=True)
        raise typer.Exit(1) from None


@merchants_app.command("settle")
def merchants_settle(
    day: Annotated[
        str | None,
        typer.Option("--day", help="business day YYYY-MM-DD (default: yesterday, operator's zone)"),
    ] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Settle a business day: one payout per merchant (its charges net of fees and refunds);
    failed payouts of that day are retried. Running it again pays nothing twice."""
    from datetime import date, timedelta

    from strongroom.settlement import service as settlement

    settings = _settings(database_url)
    zone = settings.settlement.timezone
    try:
        chosen = (
            date.fromisoformat(day)
            if day is not None
            else settlement.local_day(db.utcnow(), zone) - timedelta(days=1)
        )
    except ValueError as exc:
        err.print(f"[red]--day must be YYYY-MM-DD[/red]: {escape(str(exc))}")
        raise typer.Exit(2) from exc
    factory = db.make_session_factory(db.make_engine(settings.database_url))
    try:
        done = settlement.settle(
            factory, settings.settlement, settings.asset_registry(), day=chosen
        )
    except DomainError as exc:
        err.print(f"[red]refused[/red]: {escape(exc.message)}")
        raise typer.Exit(1) from exc
    console.print(
        f"{chosen.isoformat()}: opened {done.opened}, paid {done.paid}, failed {done.failed}, "
        f"waiting {done.waiting}, nothing due {done.nothing_due}"
    )


@merchants_app.command("run-payout-batch")
def merchants_run_payout_batch(
    batch_id: Annotated[str, typer.Argument(help="the payout batch's id (pb_...)")],
    pause: Annotated[
        float, typer.Option(min=0.0, max=60.0, help="seconds between rows (spares the bank)")
    ] = 0.0,
    database_url: DatabaseUrl = None,
) -> None:
    """Execute a payout batch row by row (rows the bank left unanswered are polled again, up
    to three passes); safe to re-run: each row is paid at most once."""
    from strongroom.settlement import batch_payouts

    settings = _settings(database_url)
    factory = db.make_session_factory(db.make_engine(settings.database_url))
    try:
        done = batch_payouts.run_batch(
            factory, settings.asset_registry(), batch_id=batch_id, pause_s=pause, passes=3
        )
    except DomainError as exc:
        err.print(f"[red]refused[/red]: {escape(exc.message)}")
        raise typer.Exit(1) from exc
    console.print(
        f"{batch_id}: {done.status}, paid {done.paid}, failed {done.failed}, waiting {done.waiting}"
    )


if __name__ == "__main__":
    app()
