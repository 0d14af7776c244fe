"""Known-vulnerability check of the locked dependencies, offline (run by `make audit` and CI).

    python tools/audit_deps.py requirements/lock-test.txt [requirements/lock-core.txt ...]

Every `name==version` of the hash-pinned locks is checked against the OSV records of the PyPA advisory
database kept in requirements/advisories.json (refreshed by tools/advisory_snapshot.py; its commit date
is printed, so a stale snapshot is visible). Where the machine can reach an advisory service, run
`pip-audit -r <lock> --require-hashes` as well: this offline check only knows what the snapshot knew.
Exit status 1 lists each affected package with the advisory ids; 2 means the check could not run.
"""

from __future__ import annotations

import json
import re
import sys
from datetime import UTC, datetime
from pathlib import Path

from packaging.version import InvalidVersion, Version

LOCKED = re.compile(r"^([A-Za-z0-9_.-]+)==([^\s;\\]+)", re.M)
SNAPSHOT = Path(__file__).resolve().parent.parent / "requirements" / "advisories.json"
STALE_DAYS = 180


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def affects(affected: dict, version: Version) -> bool:
    """OSV semantics for ECOSYSTEM ranges: introduced <= v < fixed (or <= last_affected); plus listed versions."""
    if str(version) in affected.get("versions", ()):
        return True
    for r in affected.get("ranges", ()):
        introduced: Version | None = None
        for event in r.get("events", ()):
            try:
                if "introduced" in event:
                    introduced = Version("0") if event["introduced"] == "0" else Version(event["introduced"])
                elif "fixed" in event and introduced is not None:
                    if introduced <= version < Version(event["fixed"]):
                        return True
                    introduced = None
                elif "last_affected" in event and introduced is not None:
                    if introduced <= version <= Version(event["last_affected"]):
                        return True
                    introduced = None
            except InvalidVersion:
                continue
        if introduced is not None and introduced <= version:
            return True
    return False


def main(locks: list[str]) -> int:
    if not locks:
        print("usage: audit_deps.py LOCKFILE [LOCKFILE ...]", file=sys.stderr)
        return 2
    try:
        snapshot = json.loads(SNAPSHOT.read_text())
    except (OSError, ValueError) as exc:
        print(f"audit: cannot read the advisory snapshot {SNAPSHOT}: {exc}", file=sys.stderr)
        return 2
    pins: dict[str, str] = {}
    for lock in locks:
        try:
            pins.update({canonical(n): v for n, v in LOCKED.findall(Path(lock).read_text())})
        except OSError as exc:
            print(f"audit: cannot read lock file {lock}: {exc}", file=sys.stderr)
            return 2
    by_package: dict[str, list[dict]] = {}
    for advisory in snapshot["advisories"]:
        for a in advisory["affected"]:
            by_package.setdefault(a["name"], []).append({**a, "advisory": advisory})
    unknown = sorted(set(pins) - set(snapshot["packages"]))
    findings = []
    for name, raw in sorted(pins.items()):
        version = Version(raw)
        for a in by_package.get(name, []):
            if affects(a, version):
                adv = a["advisory"]
                findings.append(f"{name}=={raw}: {adv['id']} ({', '.join(adv['aliases'])}) {adv['summary'][:120]}")
    age = ""
    if snapshot.get("date"):
        days = (datetime.now(UTC) - datetime.fromisoformat(snapshot["date"])).days
        age = f", {days} days old" + (" (STALE: refresh with tools/advisory_snapshot.py)" if days > STALE_DAYS else "")
    print(f"audit: {len(pins)} locked packages checked against {len(snapshot['advisories'])} advisories "
          f"(PyPA advisory database at {str(snapshot.get('commit'))[:12]}, {snapshot.get('date')}{age})")
    if unknown:
        print(f"audit: not in the snapshot's package list (re-run tools/advisory_snapshot.py): {', '.join(unknown)}")
    for line in findings:
        print(f"VULNERABLE {line}")
    if findings:
        return 1
    print("audit: no known vulnerability in the locked versions")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
