"""Audit what pip-audit could not (issue #10): pip-audit's PyPI service asks PyPI for each
installed release (``/pypi/NAME/VERSION/json``); an index that serves only the project pages
(``/pypi/NAME/json``, as the PyPI this CI reaches does) answers 404, and pip-audit skips the
package. A project page lists the known vulnerabilities of the project's latest release, so a
package installed at its latest release is audited from it here; one that is not is named as not
audited. Exit 1 when a vulnerability is found, 0 otherwise.

Usage: python .ci/audit_skipped.py AUDIT.json   (``pip-audit --format json`` output)
"""

from __future__ import annotations

import json
import sys
import urllib.request
from importlib import metadata

PROJECT_URL = "https://pypi.org/pypi/{name}/json"
TIMEOUT_S = 20
PACKAGES_MAX = 1000


def project(name: str) -> dict:
    url = PROJECT_URL.format(name=name)  # https, a constant host
    with urllib.request.urlopen(url, timeout=TIMEOUT_S) as answer:  # noqa: S310
        return json.load(answer)


def audit(name: str) -> tuple[list[str], bool]:
    """(the vulnerabilities of the installed release, whether it could be audited)."""
    installed = metadata.version(name)
    page = project(name)
    if page["info"]["version"] != installed:
        return [], False
    found = [
        f"{name} {installed}: {v['id']} (fixed in {', '.join(v.get('fixed_in') or ['none'])})"
        for v in page.get("vulnerabilities") or []
        if not v.get("withdrawn")
    ]
    return found, True


def main(path: str) -> int:
    with open(path) as file:
        report = json.load(file)
    skipped = [
        d["name"] for d in report["dependencies"] if "not found on PyPI" in d.get("skip_reason", "")
    ]
    vulnerable: list[str] = []
    not_audited: list[str] = []
    for name in skipped[:PACKAGES_MAX]:
        found, audited = audit(name)
        vulnerable.extend(found)
        if not audited:
            not_audited.append(f"{name} {metadata.version(name)}")
    audited_count = len(skipped) - len(not_audited)
    print(
        f"pip-audit skipped {len(skipped)}; audited here from their project pages: {audited_count}"
    )
    if not_audited:
        print(f"not audited (not the latest release): {', '.join(not_audited)}")
    for line in vulnerable:
        print(f"VULNERABLE {line}")
    return 1 if vulnerable else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
