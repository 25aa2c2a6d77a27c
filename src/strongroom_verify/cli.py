"""`strongroom-verify FILE... [--tree OKX_V2_TREE.txt] [--account N --nonce HEX]`

Exit status: 0 every file is valid, 1 some file is invalid, 2 some file is unreadable or not a
recognised format (or the options it needs are missing).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from strongroom_verify import __version__
from strongroom_verify.formats import bitget, bitmex, detect, mexc, okx_v1, okx_v2
from strongroom_verify.formats import strongroom_por_v1 as por_v1_format
from strongroom_verify.jsonio import load_json
from strongroom_verify.result import Result

EXIT_VALID = 0
EXIT_INVALID = 1
EXIT_UNREADABLE = 2
MAX_FILE_BYTES = 2 << 30  # a BitMEX tree of tens of millions of leaves is a few hundred MB
U64_MAX = (1 << 64) - 1

_JSON_VERIFIERS: Mapping[str, Callable[[object], Result]] = {
    por_v1_format.FORMAT: por_v1_format.verify,
    mexc.FORMAT: mexc.verify,
    okx_v1.FORMAT: okx_v1.verify,
    bitget.FORMAT: bitget.verify,
}


class InputError(Exception):
    """A file that cannot be read or recognised, or a missing option: exit status 2."""


@dataclass(frozen=True)
class Options:
    tree_text: str | None
    account: int | None
    nonce: bytes | None
    verbose: bool


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="strongroom-verify",
        description="Verify proof-of-reserves inclusion proofs offline: strongroom-por-v1, "
        "MEXC, OKX (v1, v2), Bitget and BitMEX, detected automatically.",
    )
    parser.add_argument("files", nargs="+", metavar="FILE", type=Path, help="proof files")
    parser.add_argument("--tree", type=Path, help="the full OKX v2 tree (text) for OKX v2 files")
    parser.add_argument("--account", type=int, help="BitMEX account number")
    parser.add_argument("--nonce", help="BitMEX nonce (hex)")
    parser.add_argument("-v", "--verbose", action="store_true", help="print every check")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exit_request:  # --help, --version, or a usage error (status 2)
        return exit_request.code if isinstance(exit_request.code, int) else EXIT_UNREADABLE
    try:
        options = _options(args)
    except InputError as error:
        print(f"strongroom-verify: {error}", file=sys.stderr)
        return EXIT_UNREADABLE
    status = EXIT_VALID
    for path in args.files:
        status = max(status, verify_path(path, options, sys.stdout))
    return status


def _options(args: argparse.Namespace) -> Options:
    if (args.account is None) != (args.nonce is None):
        raise InputError("--account and --nonce go together")
    nonce: bytes | None = None
    if args.nonce is not None:
        try:
            nonce = bytes.fromhex(args.nonce)
        except ValueError:
            raise InputError("--nonce must be hex") from None
        if not nonce:
            raise InputError("--nonce must not be empty")
    if args.account is not None and not 0 <= args.account <= U64_MAX:
        raise InputError("--account must be in 0..2^64-1")
    tree_text = None if args.tree is None else read_text(args.tree)
    return Options(tree_text, args.account, nonce, args.verbose)


def read_text(path: Path) -> str:
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
    except OSError as error:
        raise InputError(f"cannot read {path}: {error.strerror or error}") from None
    if len(data) > MAX_FILE_BYTES:
        raise InputError(f"{path} is larger than {MAX_FILE_BYTES} bytes")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InputError(f"{path} is not UTF-8 text") from None


def load_document(path: Path) -> tuple[str, object]:
    """Read a file and detect its format: (format name, parsed JSON or the raw text)."""
    text = read_text(path)
    document: object
    try:
        document = load_json(text)
    except ValueError as error:
        if not bitmex.detect(text):
            raise InputError(f"{path} is not JSON ({error}) nor a BitMEX tree") from None
        document = text
    name = detect(document)
    if name is None:
        raise InputError(
            f"{path} is not a recognised proof format "
            "(strongroom-por-v1, MEXC, OKX v1, OKX v2, Bitget, BitMEX)"
        )
    return name, document


def verify_document(name: str, document: object, options: Options) -> Result:
    if name == okx_v2.FORMAT:
        if options.tree_text is None:
            raise InputError("an OKX v2 user file needs --tree OKX_V2_TREE.txt")
        return okx_v2.verify(document, options.tree_text)
    if name == bitmex.FORMAT:
        if options.account is None or options.nonce is None or not isinstance(document, str):
            raise InputError("a BitMEX tree needs --account N and --nonce HEX")
        return bitmex.verify(document, options.account, options.nonce)
    return _JSON_VERIFIERS[name](document)


def verify_path(path: Path, options: Options, out: TextIO) -> int:
    """Verify one file and print the outcome; return its exit status."""
    print(str(path), file=out)
    try:
        name, document = load_document(path)
        result = verify_document(name, document, options)
    except InputError as error:
        print(f"  UNREADABLE: {error}", file=out)
        return EXIT_UNREADABLE
    _print_result(result, options.verbose, out)
    return EXIT_VALID if result.valid else EXIT_INVALID


def _amounts(amounts: Mapping[str, str] | None) -> str:
    if not amounts:
        return "(none)"
    return ", ".join(f"{asset} {amount}" for asset, amount in amounts.items())


def _print_result(result: Result, verbose: bool, out: TextIO) -> None:
    print(f"  format:   {result.format}", file=out)
    print(f"  balances: {_amounts(result.balances)}", file=out)
    if result.root is not None:
        print(f"  root:     {result.root}", file=out)
    if result.totals is not None:
        print(f"  totals:   {_amounts(result.totals)}", file=out)
    if verbose:
        for check in result.checks:
            print(f"    {'ok  ' if check.ok else 'FAIL'} {check.message}", file=out)
    failures: Sequence[str] = [check.message for check in result.failures]
    if result.valid:
        print("  valid", file=out)
    elif failures:
        print(f"  INVALID: {failures[0]}", file=out)
        for message in failures[1:]:
            print(f"    also: {message}", file=out)
    else:
        print("  INVALID: no check could be made", file=out)
