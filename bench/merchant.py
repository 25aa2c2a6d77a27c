"""Merchant-charge benchmark (SPEC §14, issue #13 item 8): terminals charging consumers'
payment codes through ``POST /v1/merchant/charges`` on PostgreSQL, against the pgbench anchor
measured in the same run.

* charges, spread: each terminal is its own merchant     vs  pgbench TPC-B-like TPS (target >= 0.5)
* charges, hot merchant: every terminal one merchant      vs  the spread figure      (target >= 0.5)

A charge is the whole path a till takes: the terminal key (hashed lookup, audited), the code
resolved and consumed (one row), the payer's limits (``merchant_payment``), three linked legs
(payer -> merchant, merchant -> fee account) and the receipt email, in one transaction, once per
Idempotency-Key. Codes are computed by the load generator from each device's secret with the
documented algorithm (``strongroom.paycodes.domain``, docs/payment-codes.md), as a phone would
offline: each device shows one code per 30 s step, and the server accepts the previous, the
current and the next step's, so a code is never reused. It reuses bench/ledger.py's pgbench
anchor, server runner, seeding helpers and closed-loop load generator; the server runs with the
bench's tier table (no spending windows) and ``payment_codes.devices_per_user_max`` raised so
enough devices exist. Exit 0 when the run is correct (``strongroom ledger check`` passes, every
acknowledged charge is in the journal, no request failed), else 1.

    .venv/bin/python bench/merchant.py [--clients 16] [--seconds 10] [--workers 2]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import re
import shutil
import sys
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pyotp
from sqlalchemy.engine import Engine

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ledger as lb

from strongroom.db import make_engine, upgrade
from strongroom.paycodes import domain

USERS = 48
DEVICES_PER_USER = 40
STEP_S = 30
BANK = {"holder_name": "Bench Shop Ltd", "bank_code": "004", "account_number": "123456789"}


@dataclass(frozen=True, slots=True)
class Device:
    issuer: str
    locator: int
    secret: bytes


class Codes:
    """Payment codes never used before: for each device, the steps the server accepts now
    (the current and the next: the previous one could expire while a request waits), each
    handed out once. Thread- and task-safe enough for one
    asyncio loop (no awaits inside)."""

    def __init__(self, devices: list[Device]) -> None:
        self.devices = devices
        self.used: set[tuple[int, int]] = set()
        self.cursor = itertools.cycle(range(len(devices)))

    def take(self) -> str:
        step = int(time.time()) // STEP_S
        for _ in range(len(self.devices)):
            index = next(self.cursor)
            # the current and the next step: a previous step's code could expire in flight
            for candidate in (step, step + 1):
                if (index, candidate) not in self.used:
                    self.used.add((index, candidate))
                    device = self.devices[index]
                    return domain.code(
                        issuer_id=device.issuer,
                        locator=device.locator,
                        secret=device.secret,
                        step=candidate,
                    )
        raise RuntimeError("out of payment codes: raise USERS or DEVICES_PER_USER")


def _admin(server: lb.Server) -> httpx.Client:
    email = f"bench-op-{uuid.uuid4().hex[:6]}@bench.example"
    made = server.cli(
        "admin",
        "create-operator",
        "--email",
        email,
        "--role",
        "admin",
        "--password",
        lb.PASSWORD,
        "--with-totp-secret",
    )
    found = re.search(r"^totp_secret: (\S+)$", made.stdout, re.M)
    if made.returncode != 0 or found is None:
        raise RuntimeError(f"create-operator failed:\n{made.stdout}\n{made.stderr}")
    client = httpx.Client(base_url=server.base_url, timeout=60.0)
    login = lb._ok(
        client.post(
            "/v1/auth/login",
            json={"email": email, "password": lb.PASSWORD, "otp": pyotp.TOTP(found[1]).now()},
        ),
        200,
    )
    client.headers["Authorization"] = f"Bearer {login['token']}"
    return client


def _merchant_key(admin: httpx.Client, index: int) -> str:
    body = {
        "name": f"Bench Shop {index}",
        "mcc": "5812",
        "region": "HK",
        "settlement_bank_account": BANK,
    }
    merchant_id = lb._ok(admin.post("/v1/admin/merchants", json=body), 201)["merchant_id"]
    return str(
        lb._ok(admin.post(f"/v1/admin/merchants/{merchant_id}/api-keys", json={}), 201)["api_key"]
    )


def _devices(base_url: str, user: lb.BenchUser) -> list[Device]:
    found = []
    with httpx.Client(base_url=base_url, timeout=60.0) as client:
        for i in range(DEVICES_PER_USER):
            made = lb._ok(
                client.post(
                    "/v1/devices",
                    json={"name": f"phone {i}"},
                    headers={"Authorization": f"Bearer {user.token}"},
                ),
                201,
            )
            found.append(
                Device(made["issuer_id"], int(made["locator"]), domain.secret_bytes(made["secret"]))
            )
    return found


def charges(keys: list[str], codes: Codes) -> Callable[[int], lb.Request]:
    """Terminal ``index`` charges with ``keys[index % len(keys)]``: HKD 1.00, a fresh code and
    a fresh Idempotency-Key each."""

    def make(index: int) -> lb.Request:
        head = f"X-Api-Key: {keys[index % len(keys)]}\r\nContent-Type: application/json\r\n"

        async def send(client: lb.HttpClient, _rng: random.Random) -> lb.Outcome:
            body = b'{"payment_code":"%s","amount":"1.00","asset":"HKD"}' % codes.take().encode()
            headers = f"{head}Idempotency-Key: {uuid.uuid4().hex}\r\n"
            status, answer = await client.request(
                "POST", "/v1/merchant/charges", body=body, headers=headers
            )
            if status == 201:
                return lb.Outcome(ok=True, transfers=1)
            return lb.Outcome(ok=False, error=lb._error_text(status, answer))

        return send

    return make


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="merchant charges vs pgbench")
    parser.add_argument("--clients", type=int, default=16, help="terminals (and pgbench -c)")
    parser.add_argument("--seconds", type=float, default=10, help="length of each phase")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--pg-url", default=lb.DEFAULT_PG_URL)
    ns = parser.parse_args(argv)
    opts = lb.Options(
        clients=ns.clients,
        seconds=ns.seconds,
        pg_url=ns.pg_url,
        workers=ns.workers,
        users=USERS,
        accounts=2,
        batch_size=1,
        keep_logs=False,
    )
    dbs = lb.Databases(opts.pg_url)
    meter = lb.CpuMeter()
    server: lb.Server | None = None
    engine: Engine | None = None
    started_at = datetime.now(UTC)
    try:
        anchor = lb.run_pgbench(dbs, opts, meter)
        lb.say(f"pgbench: {anchor.tps:,.1f} TPS (latency average {anchor.latency_avg_ms:.2f} ms)")
        name = dbs.create("strongroom_bench")
        meter.databases.add(name)
        url = dbs.url(name).render_as_string(hide_password=False)
        engine = make_engine(url, pool_size=4)
        upgrade(engine)
        server = lb.Server(database_url=url, workers=opts.workers)
        server.env["STRONGROOM_PAYMENT_CODES__DEVICES_PER_USER_MAX"] = str(DEVICES_PER_USER)
        server.start()
        meter.server_pid = server.pid
        started = time.monotonic()
        emails = [f"payer{i}-{uuid.uuid4().hex[:6]}@bench.example" for i in range(USERS)]
        with ThreadPoolExecutor(max_workers=opts.clients) as pool:
            users = list(pool.map(lambda e: lb._make_user(server.base_url, engine, e), emails))
            devices = [
                d
                for found in pool.map(lambda u: _devices(server.base_url, u), users)
                for d in found
            ]
        admin = _admin(server)
        try:
            spread_keys = [_merchant_key(admin, i) for i in range(opts.clients)]
            hot_keys = [_merchant_key(admin, opts.clients)]
        finally:
            admin.close()
        lb.say(
            f"seeded {USERS} payers, {len(devices)} devices, {opts.clients + 1} merchants "
            f"in {time.monotonic() - started:.1f} s"
        )
        codes = Codes(devices)
        phases: dict[str, lb.PhaseResult] = {}
        for key, title, keys in (
            ("spread", "charges, one merchant per terminal", spread_keys),
            ("hot", "charges, one hot merchant", hot_keys),
        ):
            dbs.checkpoint()
            lb.say(f"phase {title}: {opts.clients} terminals for {opts.seconds:g} s")
            phase = lb.run_phase(
                title,
                base_url=server.base_url,
                clients=opts.clients,
                seconds=opts.seconds,
                make_request=charges(keys, codes),
                meter=meter,
            )
            phases[key] = phase
            lb.say(
                f"  {phase.requests:,} charges in {phase.elapsed_s:.1f} s: "
                f"{phase.transfers_per_s:,.1f} charges/s, {phase.errors} errors"
            )
            lb.report_errors(phase)
        server.stop()
        acknowledged = phases["spread"].transfers + phases["hot"].transfers
        verification = lb.verify(server, engine, {"merchant_payment": acknowledged})
        print(verification.check_output)
        spread, hot = phases["spread"], phases["hot"]
        rows = [
            (
                "merchant charges, spread (TPS)",
                spread.transfers_per_s,
                "pgbench TPC-B-like (TPS)",
                anchor.tps,
                0.5,
            ),
            (
                "merchant charges, hot (TPS)",
                hot.transfers_per_s,
                "charges, spread (TPS)",
                spread.transfers_per_s,
                0.5,
            ),
            (
                "(context) hot vs pgbench",
                hot.transfers_per_s,
                "pgbench TPC-B-like (TPS)",
                anchor.tps,
                0.0,
            ),
        ]
        print("=" * 100)
        print(
            f"Merchant benchmark: {opts.clients} terminals, {opts.seconds:g} s per phase, "
            f"{opts.workers} server workers, {os.cpu_count()} cores"
        )
        print(f"{'figure':<34}{'value':>10}  {'anchor':<26}{'value':>10}{'ratio':>8}{'target':>8}")
        for figure, value, anchor_name, anchor_value, target in rows:
            r = lb.ratio(value, anchor_value)
            verdict = "-" if not target else ("ok" if r >= target else "MISSED")
            print(
                f"{figure:<34}{lb._fmt(value):>10}  {anchor_name:<26}{lb._fmt(anchor_value):>10}"
                f"{lb._fmt(r, 2):>8}{'>= ' + format(target, 'g') if target else '':>8}  {verdict}"
            )
        print(f"{'latency (ms)':<34}{'p50':>10}{'p90':>10}{'p99':>10}{'max':>10}{'errors':>8}")
        for phase in (spread, hot):
            print(
                f"{phase.name:<34}{lb._fmt(phase.latency_ms(0.5), 2):>10}"
                f"{lb._fmt(phase.latency_ms(0.9), 2):>10}{lb._fmt(phase.latency_ms(0.99), 2):>10}"
                f"{lb._fmt(phase.latency_ms(1.0), 2):>10}{phase.errors:>8}"
            )
            if phase.cpu is not None:
                print(f"  CPU cores: {phase.cpu.describe()}")
        print("=" * 100)
        errors = spread.errors + hot.errors
        correct = verification.check_ok and verification.journal_ok and errors == 0
        print(
            f"correctness: ledger check {'OK' if verification.check_ok else 'FAILED'}, "
            f"journal {'OK' if verification.journal_ok else 'MISSING'}, {errors} failed requests"
        )
        lb.RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        out = lb.RESULTS_DIR / f"merchant-{started_at:%Y%m%d-%H%M%S}.json"
        out.write_text(
            json.dumps(
                {
                    "anchor_tps": anchor.tps,
                    "phases": {k: p.summary() for k, p in phases.items()},
                    "correct": correct,
                },
                indent=2,
            )
        )
        lb.say(f"results written to {out.relative_to(lb.ROOT)}")
        if not correct:
            kept = lb.RESULTS_DIR / f"merchant-server-{started_at:%Y%m%d-%H%M%S}.log"
            shutil.copyfile(server.log.name, kept)
        return 0 if correct else 1
    except KeyboardInterrupt:
        return 130
    except Exception:
        if server is not None and server.process is not None:
            print(f"--- server log (tail) ---\n{server.log_tail()}", file=sys.stderr)
        raise
    finally:
        if server is not None:
            server.stop()
        if engine is not None:
            engine.dispose()
        dbs.drop_all()


if __name__ == "__main__":
    sys.exit(main())
