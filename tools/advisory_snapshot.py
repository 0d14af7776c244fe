"""Refresh requirements/advisories.json from a checkout of the PyPA advisory database (OSV YAML records).

    python tools/advisory_snapshot.py /path/to/pypa/advisory-database requirements/lock-test.txt

Keeps only the records of the packages the locks name (so the snapshot stays small) and records the
database commit and date, so `tools/audit_deps.py` can say how old its knowledge is. Needs PyYAML
(a maintainer's tool: not a dependency of Sampan or of its tests).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import yaml  # type: ignore[import-untyped]

LOCKED = re.compile(r"^([A-Za-z0-9_.-]+)==", re.M)


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def main(database: str, *locks: str) -> None:
    """`database`: a checkout (work tree) of the advisory database; its `git log` gives the snapshot date."""
    names = {canonical(m) for lock in locks for m in LOCKED.findall(Path(lock).read_text())}
    root = Path(database)
    records = []
    for folder in sorted((root / "vulns").iterdir()):
        if canonical(folder.name) not in names:
            continue
        for path in sorted(folder.glob("*.yaml")):
            record = yaml.safe_load(path.read_text())
            if record.get("withdrawn"):
                continue
            affected = [{"name": canonical(a["package"]["name"]),
                         "ranges": [r for r in a.get("ranges", []) if r.get("type") == "ECOSYSTEM"],
                         "versions": [str(v) for v in a.get("versions", [])]}
                        for a in record.get("affected", []) if a.get("package", {}).get("ecosystem") == "PyPI"]
            records.append({"id": record["id"], "aliases": record.get("aliases", []),
                            "summary": (record.get("summary") or record.get("details", ""))[:300],
                            "affected": affected})
    commit = subprocess.run(["git", "-C", database, "log", "-1", "--format=%H %cI"], capture_output=True,
                            text=True).stdout.split()
    if len(sys.argv) > 1 and "SNAPSHOT_COMMIT" in __import__("os").environ:  # an exported tree: say which commit
        commit = __import__("os").environ["SNAPSHOT_COMMIT"].split()
    out = {"source": "PyPA advisory database (CC-BY-4.0), https://github.com/pypa/advisory-database",
           "commit": commit[0] if commit else None, "date": commit[1] if len(commit) > 1 else None,
           "packages": sorted(names), "advisories": records}
    Path("requirements/advisories.json").write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")
    print(f"{len(records)} advisories for {len(names)} locked packages")


if __name__ == "__main__":
    main(*sys.argv[1:])
