"""Per-id CPU cost of PSI's hash to curve against one raw X25519 multiplication, interleaved in one process.

Run from the repository root: ``.venv/bin/python bench/psi_h2c_bench.py [n] [repeats]`` (defaults 50000, 5).

Why CPU time and one process: on a shared, loaded machine wall time moves with other sessions; the CPU time
of one process, with the candidates interleaved and the median of several repeats taken, compares them under
the same conditions. Each candidate is the protocol's own per-id loop body (`psi_points._work`):

* raw: X25519 of an existing point (what the protocol's "ideal" counts, 4 per pair of ids);
* v2: Elligator 2 (the current map) then X25519;
* v1: try-and-increment with a Legendre check per candidate (the map before v2, kept here only as a
  reference; SHA-512(domain || counter || id), expected two candidates per id) then X25519;
* direct: u = SHA-256(id) with no square test (about half on the twist; NOT used, see `psi_points`) then X25519.

The protocol hashes 2 of its 4 multiplications per pair of ids, so a map costing h per id puts the
protocol's floor at ``1 + h / (2 raw)`` times the raw rate. Prints one line per candidate and writes
bench/results/psi_h2c.json.
"""

from __future__ import annotations

import hashlib
import json
import platform
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import gmpy2
import numpy as np

from sampan.vertical import psi_points
from sampan.vertical.psi_party import _new_scalar

P, A = 2**255 - 19, 486662
_V1_PREFIXES = [b"sampan/psi/v1/curve25519/try-and-increment" + bytes([c]) for c in range(256)]


def v1_points(items: list[bytes]) -> list[bytes]:
    """The v1 map (reference only): first counter whose 255-bit u < p has a square curve value."""
    sha512, legendre, mpz, p_mpz, mask = hashlib.sha512, gmpy2.legendre, gmpy2.mpz, gmpy2.mpz(P), (1 << 255) - 1
    out = []
    for idb in items:
        for prefix in _V1_PREFIXES:
            u = int.from_bytes(sha512(prefix + idb).digest(), "little") & mask
            if u < P:
                m = mpz(u)
                if legendre(m * (m * (m + A) + 1), p_mpz) == 1:
                    break
        out.append(u.to_bytes(32, "little"))
    return out


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 50_000
    repeats = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    ids = [b"BR%08d" % i for i in range(n)]
    key = _new_scalar()
    exchange, from_public = key.exchange, psi_points._from_public_bytes
    points = psi_points._elligator2(ids)

    def blinded(pts: list[bytes]) -> bytes:
        return b"".join([exchange(from_public(pt)) for pt in pts])

    candidates: dict[str, Callable[[], object]] = {
        "raw": lambda: blinded(points),
        "v2_elligator2": lambda: blinded(psi_points._elligator2(ids)),
        "v1_try_and_increment": lambda: blinded(v1_points(ids)),
        "direct_sha256": lambda: blinded([hashlib.sha256(i).digest() for i in ids]),
        "v2_map_only": lambda: psi_points._elligator2(ids),
        "v1_map_only": lambda: v1_points(ids),
    }
    times: dict[str, list[float]] = {k: [] for k in candidates}
    for _ in range(repeats):
        for name, run in candidates.items():
            started = time.process_time()
            run()
            times[name].append((time.process_time() - started) / n * 1e6)
    median = {k: float(np.median(v)) for k, v in times.items()}
    raw = median["raw"]
    rows = {}
    for name in ("v2_elligator2", "v1_try_and_increment", "direct_sha256"):
        h = median[name] - raw
        rows[name] = {"us_per_id": round(median[name], 2), "map_us": round(h, 2), "floor": round(1 + h / (2 * raw), 3)}
    for name in ("v2_map_only", "v1_map_only"):
        rows[name] = {"us_per_id": round(median[name], 2), "floor": round(1 + median[name] / (2 * raw), 3)}
    report = {"date": datetime.now(UTC).isoformat(timespec="seconds"), "machine": platform.node(), "n": n,
              "repeats": repeats, "raw_us_per_multiplication": round(raw, 2), "candidates": rows,
              "all_runs_us": {k: [round(x, 2) for x in v] for k, v in times.items()}}
    print(json.dumps(report, indent=2))
    out = Path(__file__).resolve().parent / "results" / "psi_h2c.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
