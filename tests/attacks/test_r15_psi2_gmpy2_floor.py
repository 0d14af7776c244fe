"""R15-PSI2-3 (fixed: the floor is now gmpy2>=2.2).

The Elligator 2 map (commit f207d92) calls ``gmpy2.mpz.from_bytes`` and ``mpz.to_bytes``, which
gmpy2 gained only in 2.2.0 (gmpy2/gmpy2 PR #394, issue #431: "'mpz' object has no attribute 'to_bytes'" on 2.1.x),
but pyproject.toml still accepts ``gmpy2>=2.1``. An install resolved without the lock (e.g. next to a distribution's
python3-gmpy2 2.1.5, Ubuntu 24.04) breaks the ECDH PSI default at its first id.

Expected: the declared floor admits no gmpy2 that lacks what the map calls.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]


def test_the_declared_gmpy2_floor_has_mpz_byte_conversions() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    specs = [Requirement(r) for r in project["dependencies"] if Requirement(r).name == "gmpy2"]
    assert specs, "gmpy2 is a core dependency (hash to curve)"
    assert not any(spec.specifier.contains("2.1.5") for spec in specs), \
        f"{[str(s) for s in specs]} admits gmpy2 2.1.5, which has no mpz.to_bytes/from_bytes"
