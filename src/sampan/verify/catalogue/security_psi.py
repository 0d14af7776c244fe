"""S-PSI-LEAK: what the verifier's own party sees of the ids during private set intersection (R16-VERDICT-11).

Threat model: a curious party (the verifier's feature holder) and a curious platform. PSI may reveal the
intersection to the parties that get it, nothing else: no id outside the intersection may cross a party boundary in
the clear or in a form anyone can recompute (an unsalted hash). The verifier knows both parties' ids (it drew them),
so it checks every message its party received for the other side's ids outside the intersection, every message its
party sent for its own ids outside the intersection, and the platform's reported intersection size against the one
it computes itself. A form is found when a string element equals the id, or when the first 8 bytes of the id's
MD5/SHA-1/SHA-2/SHA-3/BLAKE2b digest appear anywhere in an array's bytes or as the head of a hex string (64 random
bits: no accidental match). Integer arrays are not read as ids (row indices look the same).

What it cannot see: a payload sealed to the party (Sampan seals PSI payloads to the peer party) is opaque at the
party's boundary, where the tap sits; in-process the tap is the platform's own report (`dataplane.SELF_REPORTED`).
"""

from __future__ import annotations

import hashlib
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
    """The ids a party must not see, in the clear and as unsalted-hash prefixes (8 bytes of each digest)."""

    def __init__(self, ids: Iterable[str]) -> None:
        self.clear = {str(i) for i in ids}
        self.prefix: dict[bytes, str] = {}
        for i in sorted(self.clear):
            for name in HASHES:
                self.prefix[hashlib.new(name, i.encode()).digest()[:8]] = i
        self._keys = np.frombuffer(b"".join(self.prefix), dtype=np.uint64) if self.prefix else np.zeros(0, np.uint64)

    def _in_bytes(self, raw: bytes) -> set[str]:
        raw = raw[:_MAX_BYTES]
        if len(raw) < 8 or not self.prefix:
            return set()
        windows = np.lib.stride_tricks.sliding_window_view(np.frombuffer(raw, dtype=np.uint8), 8)
        keys = np.ascontiguousarray(windows).view(np.uint64).reshape(-1)
        return {self.prefix[k.tobytes()] for k in keys[np.isin(keys, self._keys)]}

    def _in_text(self, text: str) -> set[str]:
        t = text.strip()
        hits = {t} if t in self.clear else set()
        head = t[:16].lower()
        if len(head) == 16 and all(c in "0123456789abcdef" for c in head):
            found = self.prefix.get(bytes.fromhex(head))
            if found is not None:
                hits.add(found)
        return hits

    def found_in(self, payload: Mapping[str, Any]) -> set[str]:
        """The ids of this set that ``payload`` (a message's arrays) carries in a recognisable form."""
        hits: set[str] = set()
        for array in payload.values():
            a = np.asarray(array)
            if a.dtype.kind in "USO":
                parts = []
                for v in a.reshape(-1).tolist():
                    if isinstance(v, bytes):
                        parts.append(v)
                        hits |= self._in_text(v.decode("utf-8", "replace"))
                    else:
                        hits |= self._in_text(str(v))
                hits |= self._in_bytes(b"".join(parts))
            elif a.dtype.kind != "V":
                hits |= self._in_bytes(a.tobytes())
        return hits


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
    others, own = IdForms(holder_ids - common), IdForms(own_ids - common)
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
        "forms_checked": "string equal to the id; first 8 bytes of " + ", ".join(HASHES) + " of the id in any "
                         "array's bytes or at the head of a hex string",
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
