"""S-PSI-LEAK: what the verifier's own party sees of the ids during private set intersection (R16-VERDICT-11).

Threat model: a curious party (the verifier's feature holder) and a curious platform. PSI may reveal the
intersection to the parties that get it, nothing else: no id outside the intersection may cross a party boundary in
the clear or in a form anyone can recompute (an unsalted hash). The verifier knows both parties' ids (it drew them),
so it checks every message its party received for the other side's ids outside the intersection, every message its
party sent for its own ids outside the intersection, and the platform's reported intersection size against the one
it computes itself. A form is found when a string element equals the id, or when the first 8 bytes of the id's
MD5/SHA-1/SHA-2/SHA-3/BLAKE2b digest appear anywhere in an array's bytes or as the head of a hex string (64 random
bits: no accidental match); since R16B-2 also inside longer strings and in base64/hex decodings, and numeric ids in
integer arrays and tokens beyond chance (`IdForms`).

What it cannot see: a payload sealed to the party (Sampan seals PSI payloads to the peer party) is opaque at the
party's boundary, where the tap sits; in-process the tap is the platform's own report (`dataplane.SELF_REPORTED`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from sampan.verify.catalogue.base import Context, NotApplicable, Result
from sampan.verify.catalogue.common import plane_for
from sampan.verify.catalogue.data import VERTICAL_PARTIES
from sampan.verify.catalogue.dataplane import qualify_self_reported
from sampan.verify.catalogue.jobs import JobRun, PartySpec, job_seed, run_job
from sampan.verify.datasets import ID, LABEL, table_data
from sampan.verify.thresholds import value

__all__ = ["HASHES", "IdForms", "psi_leak"]

HASHES = ("md5", "sha1", "sha224", "sha256", "sha384", "sha512", "sha3_256", "blake2b", "blake2s")
_MAX_BYTES = 64 << 20  # bytes of one message read for hashes (a larger payload is read up to this)


class IdForms:
    """The ids a party must not see, in every form the verifier can read (R16B-2).

    Strict forms (one is a leak): a string element equal to an id; an id as a token of a longer string ("id:C1",
    "C1,C2", a token is a run of letters/digits joined by . _ -), also inside the printable base64 (standard or
    URL-safe) or hex decoding of any run of a string or bytes value; the first 8 bytes of an unsalted digest
    (`HASHES`) of an id anywhere in an array's bytes or in any such decoding (64 random bits: no accidental match).
    Numeric ids (all digits, as the benchmark's) are short numbers that honest messages carry by chance (row
    indices, timestamps), so their token forms and the values of integer arrays count only in excess of chance: an
    array whose values or tokens cover the private ids' numbers at a rate at least `psi_id_excess_min` above the
    rate at which they cover the other numbers of the id range (``universe``) leaks the ids it covers. Not found: a
    hash salted with any constant, an id split or encrypted, or a few numeric ids hidden among chance numbers.
    """

    def __init__(self, ids: Iterable[str], universe: Iterable[str] = ()) -> None:
        self.clear = {str(i) for i in ids}
        self.prefix: dict[bytes, str] = {}
        for i in sorted(self.clear):
            for name in HASHES:
                self.prefix[hashlib.new(name, i.encode()).digest()[:8]] = i
        self._keys = np.frombuffer(b"".join(self.prefix), dtype=np.uint64) if self.prefix else np.zeros(0, np.uint64)
        self.numeric = bool(self.clear) and all(i.isdigit() and i == str(int(i)) for i in self.clear)
        self._private = np.asarray(sorted(int(i) for i in self.clear), dtype=np.int64) if self.numeric else None
        self._decoys = np.zeros(0, np.int64)
        if self._private is not None:
            top = max([int(self._private.max())] + [int(u) for u in map(str, universe) if u.isdigit()])
            self._decoys = np.setdiff1d(np.arange(0, top + 1, dtype=np.int64), self._private)

    def _in_bytes(self, raw: bytes) -> set[str]:
        raw = raw[:_MAX_BYTES]
        if len(raw) < 8 or not self.prefix:
            return set()
        windows = np.lib.stride_tricks.sliding_window_view(np.frombuffer(raw, dtype=np.uint8), 8)
        keys = np.ascontiguousarray(windows).view(np.uint64).reshape(-1)
        return {self.prefix[k.tobytes()] for k in keys[np.isin(keys, self._keys)]}

    def _numbers(self, values: np.ndarray) -> set[str]:
        """The private numeric ids among ``values`` when they cover them beyond chance (see the class note)."""
        if self._private is None or values.size == 0:
            return set()
        values = np.unique(values)
        hit = np.isin(self._private, values)
        decoy_rate = float(np.isin(self._decoys, values).mean()) if self._decoys.size else 0.0
        if float(hit.mean()) - decoy_rate < value("psi_id_excess_min"):
            return set()
        return {str(int(i)) for i in self._private[hit]}

    def _scan_text(self, text: str, tokens: set[str]) -> set[str]:
        """Strict hits in ``text`` and its decodings; adds every token seen (for the numeric rule) to ``tokens``."""
        hits: set[str] = set()
        found = _TOKEN.findall(text)
        tokens.update(found)
        for run in _B64_RUN.findall(text):
            for decoded in _b64_decodings(run):
                hits |= self._in_bytes(decoded)
                if _printable(decoded):
                    tokens.update(_TOKEN.findall(decoded.decode("ascii")))
        for run in _HEX_RUN.findall(text):
            for shift in (0, 1):
                chunk = run[shift:len(run) - (len(run) - shift) % 2]
                if not chunk:
                    continue
                decoded = bytes.fromhex(chunk)
                hits |= self._in_bytes(decoded)
                if _printable(decoded):
                    tokens.update(_TOKEN.findall(decoded.decode("ascii")))
        return hits

    def found_in(self, payload: Mapping[str, Any]) -> set[str]:
        """The ids of this set that ``payload`` (a message's arrays) carries in a recognisable form."""
        hits: set[str] = set()
        for array in payload.values():
            a = np.asarray(array)
            if a.dtype.kind in "USO":
                parts: list[bytes] = []
                tokens: set[str] = set()
                budget = _MAX_BYTES
                for v in a.reshape(-1).tolist():
                    raw = v if isinstance(v, bytes) else str(v).encode("utf-8", "replace")
                    parts.append(raw)
                    text = raw[:budget].decode("latin-1")
                    budget -= len(text)
                    if text.strip() in self.clear:
                        hits.add(text.strip())
                    if text:
                        hits |= self._scan_text(text, tokens)
                hits |= self._in_bytes(b"".join(parts))
                hits |= tokens & self.clear if not self.numeric else set()
                if self.numeric:
                    numbers = [int(t) for t in tokens if t.isdigit() and len(t) <= 18]
                    hits |= self._numbers(np.asarray(numbers, dtype=np.int64))
            elif a.dtype.kind != "V":
                hits |= self._in_bytes(a.tobytes())
                if a.dtype.kind in "iu" and self.numeric:
                    hits |= self._numbers(a.reshape(-1)[: _MAX_BYTES // 8].astype(np.int64, copy=False))
        return hits


_TOKEN = re.compile(r"[A-Za-z0-9]+(?:[._-][A-Za-z0-9]+)*")
_B64_RUN = re.compile(r"[A-Za-z0-9+/_-]{4,}={0,2}")
_HEX_RUN = re.compile(r"[0-9A-Fa-f]{2,}")


def _b64_decodings(run: str) -> list[bytes]:
    """The standard and URL-safe base64 decodings of ``run`` (padding restored), those that decode."""
    body = run.rstrip("=")
    padded = body + "=" * (-len(body) % 4)
    out = []
    for alt in (b"+/", b"-_"):
        try:
            out.append(base64.b64decode(padded.encode(), altchars=alt, validate=True))
        except (binascii.Error, ValueError):
            continue
    return out


def _printable(raw: bytes) -> bool:
    return bool(raw) and all(32 <= c < 127 for c in raw)


def _spec(ctx: Context) -> dict[str, Any]:
    v = ctx.data.vertical
    bank, bureau = VERTICAL_PARTIES
    return {"kind": "vertical", "model": "logistic_regression", "label": LABEL, "id_column": ID,
            "features": {bank: list(v.label_columns), bureau: list(v.feature_columns)}, "rounds": 3,
            "local_epochs": 1, "learning_rate": 0.5, "batch_size": 64, "l2": 0.0, "secure_aggregation": False,
            "seed": job_seed(ctx), "timeout_s": 300}


def _job(ctx: Context) -> tuple[JobRun, str]:
    """The vertical job with the verifier's party as the feature holder: on the wire when the platform runs it so,
    else (a platform that runs vertical jobs only in-process, as Sampan) in the platform's process, said."""
    v, t = ctx.data.vertical, ctx.data.table
    bank, bureau = VERTICAL_PARTIES
    parties = [PartySpec(bank, "label_holder", table_data(t, v.label_rows, v.label_columns, ids=True)),
               PartySpec(bureau, "feature_holder", table_data(t, v.feature_rows, v.feature_columns, label=False,
                                                              ids=True), "verifier")]
    try:
        return run_job(ctx, _spec(ctx), parties, prefix="psi-leak", plane=plane_for(ctx),
                       require_success=False), "the project named the verifier's CA"
    except NotApplicable as first:
        plane = plane_for(ctx)
        plane.ca_pem = None  # a project without the verifier's CA: the platform may then run the party in-process
        run = run_job(ctx, _spec(ctx), parties, prefix="psi-leak", plane=plane, require_success=False)
        return run, f"with the verifier's CA the platform refused the job ({first}); run without it"


def psi_leak(ctx: Context) -> Result:
    v, t = ctx.data.vertical, ctx.data.table
    holder_ids = {str(i) for i in t.ids[v.label_rows]}
    own_ids = {str(i) for i in t.ids[v.feature_rows]}
    common = holder_ids & own_ids
    universe = holder_ids | own_ids | {str(i) for i in t.ids}
    others, own = IdForms(holder_ids - common, universe), IdForms(own_ids - common, universe)
    run, how = _job(ctx)
    plane = run.plane
    received = [m for m in plane.tap.messages if m.direction == "received"]
    sent = [m for m in plane.tap.messages if m.direction == "sent"]
    if not received and not sent:
        return Result("error", f"the verifier's party exchanged no message (job {run.job['state']}; kit: "
                      f"{plane.error})", evidence={"job_id": run.job_id})
    leaked_in: dict[str, set[str]] = {}
    for m in received:
        for i in others.found_in(m.payload):
            leaked_in.setdefault(i, set()).add(m.kind)
    leaked_out: dict[str, set[str]] = {}
    for m in sent:
        for i in own.found_in(m.payload):
            leaked_out.setdefault(i, set()).add(m.kind)
    metrics = (run.results or {}).get("metrics") or {}
    reported = metrics.get("intersection_size", metrics.get("psi_intersection"))
    off = None if reported is None else abs(int(reported) - len(common))
    evidence: dict[str, Any] = {
        "job_id": run.job_id, "job_state": run.job["state"], "how": how,
        "messages_received": len(received), "messages_sent": len(sent),
        "kinds": sorted({f"{m.direction}:{m.kind}" for m in plane.tap.messages}),
        "other_side_private_ids": len(others.clear), "own_private_ids": len(own.clear),
        "received_other_side_ids": len(leaked_in), "received_examples": sorted(leaked_in)[:5],
        "received_in_kinds": sorted({k for ks in leaked_in.values() for k in ks}),
        "sent_own_ids": len(leaked_out), "sent_examples": sorted(leaked_out)[:5],
        "sent_in_kinds": sorted({k for ks in leaked_out.values() for k in ks}),
        "intersection_verifier": len(common), "intersection_reported": reported,
        "forms_checked": "string equal to the id or a token of a longer string, also in base64/hex decodings; "
                         "first 8 bytes of " + ", ".join(HASHES) + " of the id in any array's bytes or decoding; "
                         "numeric ids in integer arrays and tokens beyond chance (psi_id_excess_min)",
        "kit_error": plane.error}
    problems = []
    if leaked_in:
        problems.append(f"the verifier's party received {len(leaked_in)} of the other side's ids outside the "
                        f"intersection (in {', '.join(evidence['received_in_kinds'])})")
    if leaked_out:
        problems.append(f"{len(leaked_out)} of the verifier's party's own ids outside the intersection left it in "
                        f"the clear or as an unsalted hash (in {', '.join(evidence['sent_in_kinds'])})")
    if off is not None and off > value("psi_missing_extra"):
        problems.append(f"the platform reports an intersection of {reported}, the verifier computes {len(common)}")
    figures: dict[str, float | None] = {"ids_received": float(len(leaked_in)), "ids_sent": float(len(leaked_out)),
                                       "intersection": None if reported is None else float(reported),
                                       "expected": float(len(common))}
    if problems:
        return qualify_self_reported(Result("fail", "; ".join(problems), figures=figures, evidence=evidence), plane)
    size = (f"reported intersection {reported} = the verifier's" if reported is not None else
            "no intersection size reported (F-PSI-EXACT judges that)")
    return qualify_self_reported(Result(
        "pass", f"no id outside the intersection in {len(received)} received / {len(sent)} sent messages of the "
        f"verifier's party; {size}", figures=figures, evidence=evidence), plane)
