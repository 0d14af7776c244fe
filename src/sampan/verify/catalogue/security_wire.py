"""Security tests of the wire and the control plane: TLS/mTLS certificate checks, replay, access, malformed and
oversized requests and updates. The verifier's own party presents the bad certificates and sends the bad updates.
"""

from __future__ import annotations

import json
import re
import socket
from typing import Any

import numpy as np

from sampan.verify.catalogue.base import Context, NotApplicable, Result
from sampan.verify.catalogue.common import horizontal_parties, plane_for
from sampan.verify.catalogue.jobs import complete_job, horizontal_spec, new_project, start_job, wait_job

__all__ = ["BAD_UPDATE_RULE", "tls_probe", "access", "malformed", "oversized", "replay"]


def _mtls_applies(ctx: Context) -> None:
    if not (ctx.claims.get("mtls") or "mtls" in ctx.capabilities):
        raise NotApplicable("the platform neither claims nor offers mutual TLS for parties")


def tls_probe(variant: str) -> Any:
    """A test body: the verifier's party presents a ``variant`` certificate (or none) and must be refused."""

    def run(ctx: Context) -> Result:
        _mtls_applies(ctx)
        parties = horizontal_parties(ctx)
        plane = plane_for(ctx, variant=variant)
        spec = horizontal_spec(ctx, [p.name for p in parties], rounds=3, timeout_s=60)
        run_ = start_job(ctx, spec, parties, prefix=f"tls-{variant}", plane=plane)
        if plane.in_process:
            ctx.api.call("POST", f"/jobs/{run_.job_id}/cancel")
            plane.finish(5)
            raise NotApplicable("the party kit runs inside the platform's process: no TLS link to test")
        ended = plane.wait_kit(45)
        job = ctx.api.ok("GET", f"/jobs/{run_.job_id}")
        if job["state"] not in ("succeeded", "failed", "cancelled"):
            ctx.api.call("POST", f"/jobs/{run_.job_id}/cancel")
            job = wait_job(ctx, run_.job_id, 30)
        plane.finish(5)
        got = [m.kind for m in plane.tap.messages if m.direction == "received"]
        accepted = bool(got)
        evidence = {"kit_error": plane.error, "kit_ended": ended, "messages_received": got[:10],
                    "job_state": job["state"], "wire": plane.wire}
        if accepted:
            return Result("fail", f"a party with a {variant} client certificate was served {len(got)} messages",
                          evidence=evidence)
        return Result("pass", f"refused: {plane.error or 'no message reached the party'}", evidence=evidence)

    return run


def access(ctx: Context) -> Result:
    checks: list[dict[str, Any]] = []
    for what, token in (("no token", None), ("wrong token", "not-the-token"), ("empty token", "x")):
        for method, path, body in (("GET", "/info", None), ("POST", "/projects", {"name": "intruder"})):
            reply = ctx.api.call(method, path, body, token=token)
            checks.append({"check": f"{what}: {method} {path}", "status": reply.status, "code": reply.error_code,
                           "ok": reply.status == 401 and reply.error_code == "unauthorized"})
    # a job in project B may not name project A's parties (isolation between projects)
    project_a = new_project(ctx, "access-a")
    parties = horizontal_parties(ctx, verifier=False)
    for p in parties:
        ctx.api.ok("POST", f"/projects/{project_a}/parties",
                   {"name": p.name, "role": p.role, "operated_by": "platform", "data": p.data})
    project_b = new_project(ctx, "access-b")
    reply = ctx.api.call("POST", f"/projects/{project_b}/jobs",
                         horizontal_spec(ctx, [p.name for p in parties], rounds=1))
    if reply.ok:
        ctx.api.call("POST", f"/jobs/{reply.body.get('job_id')}/cancel")
    checks.append({"check": "a job in project B naming project A's parties", "status": reply.status,
                   "code": reply.error_code, "ok": 400 <= reply.status < 500})
    failed = [c["check"] for c in checks if not c["ok"]]
    return Result("fail" if failed else "pass", ("accepted: " + "; ".join(failed)) if failed else
                  f"{len(checks)} access checks refused", evidence={"checks": checks})


BAD_UPDATE_RULE = (
    "the bad update never reaches a model. Pass: it is dropped and the job goes on to a finite model of the right "
    "size, or the job stops with a clear error naming the offending party and no model is exported. Fail: an "
    "exported model with NaN/inf or the wrong size (the bad update got in), a model exported from a failed job, "
    "or a job that ends without an error naming the party (a crash or an opaque error). That one party can stop "
    "the job is recorded as evidence (availability), not as a failure.")


def _judge_bad_update(run: Any, party: str, d: int) -> dict[str, Any]:
    """The verdict data of a job that got one bad update from ``party`` (see `BAD_UPDATE_RULE`)."""
    model = run.model or {}
    coef = np.asarray(model.get("coefficients") or [], dtype=np.float64)
    finite = bool(coef.size) and bool(np.all(np.isfinite(coef))) and bool(
        np.isfinite(float(model.get("intercept", np.nan))))
    exported = run.model_status is not None and 200 <= int(run.model_status) < 300 and bool(model)
    err = run.job.get("error") or {}
    message = f"{err.get('code', '')} {err.get('message', '')}".strip()
    names_party = bool(message) and party in message
    if run.job["state"] == "succeeded":
        healthy = finite and coef.size == d
        outcome = "dropped, the job went on" if healthy else "the bad update reached the model"
    else:
        healthy = names_party and not exported
        outcome = ("the job stopped with a clear error naming the party (one party can stop the job)" if healthy
                   else "a model was exported from a failed job" if exported
                   else "the job stopped without an error naming the offending party")
    return {"outcome": outcome, "state": run.job["state"], "error": err or None, "error_names_party": names_party,
            "coefficients": int(coef.size), "model_export_status": run.model_status,
            "finite": finite if coef.size else None, "healthy": healthy,
            "availability": "one party can stop the job" if run.job["state"] != "succeeded" else
            "the job survived the bad party", "rule": BAD_UPDATE_RULE}


def _bad_update_job(ctx: Context, hook: Any, prefix: str) -> tuple[dict[str, Any], Any]:
    """A 3-round job whose verifier party sends what ``hook`` makes of its update; returns (verdict data, run)."""
    parties = horizontal_parties(ctx)
    plane = plane_for(ctx, update_hook=hook)
    spec = horizontal_spec(ctx, [p.name for p in parties], rounds=3, timeout_s=90)
    run = start_job(ctx, spec, parties, prefix=prefix, plane=plane)
    run = complete_job(ctx, run, require_success=False)
    if run.job["state"] != "succeeded":  # a failed job must not export a model: ask, to record the answer
        reply = ctx.api.call("GET", f"/jobs/{run.job_id}/model")
        run.model_status = reply.status
        run.model = reply.body if reply.ok and isinstance(reply.body, dict) else None
    mine = next(p.name for p in parties if p.operated_by == "verifier")
    data = _judge_bad_update(run, mine, len(ctx.data.columns))
    data["kit_error"] = plane.error if plane is not None else None
    return data, run


def malformed(ctx: Context) -> Result:
    checks: list[dict[str, Any]] = []
    project = new_project(ctx, "malformed")
    cases: list[tuple[str, str, bytes]] = [
        ("not JSON", "/projects", b"{not json"),
        ("wrong type", f"/projects/{project}/jobs", json.dumps({"kind": "horizontal", "label": "label",
                                                                  "features": {"a": ["x"]}, "rounds": "ten"}).encode()),
        ("NaN in rows", f"/projects/{project}/parties",
         b'{"name": "nan", "role": "data_owner", "operated_by": "platform", "data": {"columns": ["a"], '
         b'"rows": [[NaN]]}}'),
        ("unknown field", "/projects", json.dumps({"name": "x", "admin": True}).encode()),
        ("ragged rows", f"/projects/{project}/parties",
         json.dumps({"name": "ragged", "role": "data_owner", "operated_by": "platform",
                     "data": {"columns": ["a", "b"], "rows": [[1.0]]}}).encode()),
    ]
    for what, path, content in cases:
        reply = ctx.api.call("POST", path, content=content)
        checks.append({"check": what, "status": reply.status, "code": reply.error_code,
                       "ok": 400 <= reply.status < 500})
    evidence: dict[str, Any] = {"control_plane": checks}
    failed = [c["check"] for c in checks if not c["ok"]]
    if ctx.kit:
        data, _ = _bad_update_job(ctx, lambda r, w: np.full_like(np.asarray(w, dtype=np.float64), np.nan),
                                  "malformed-update")
        evidence["nan_update"] = data
        if not data["healthy"]:
            failed.append(f"NaN update: {data['outcome']} (job {data['state']}, GET /model "
                          f"{data['model_export_status']}, finite model: {data['finite']})")
        else:
            evidence["availability"] = data["availability"]
    return Result("fail" if failed else "pass", ("failed: " + "; ".join(failed)) if failed else
                  f"{len(checks)} malformed requests refused"
                  + (f", NaN update: {evidence['nan_update']['outcome']}" if ctx.kit else ""),
                  evidence=evidence)


def oversized(ctx: Context) -> Result:
    from sampan.verify.api import DEFAULT_MAX_BODY_BYTES

    size = int(DEFAULT_MAX_BODY_BYTES + (1 << 20))
    pad = b'{"name": "big", "pad": "' + b"x" * size + b'"}'
    reply = ctx.api.call("POST", "/projects", content=pad)
    evidence: dict[str, Any] = {"body_bytes": len(pad), "status": reply.status, "code": reply.error_code}
    failed = []
    if not 400 <= reply.status < 500:
        failed.append(f"a {len(pad) >> 20} MiB body answered {reply.status}")
    if ctx.kit:
        data, _ = _bad_update_job(ctx, lambda r, w: np.tile(np.asarray(w, dtype=np.float64), 1000),
                                  "oversized-update")
        evidence["update_x1000"] = data
        if not data["healthy"]:
            failed.append(f"update 1000x too long: {data['outcome']} (job {data['state']}, GET /model "
                          f"{data['model_export_status']})")
        else:
            evidence["availability"] = data["availability"]
    return Result("fail" if failed else "pass", ("failed: " + "; ".join(failed)) if failed else
                  f"oversized body refused ({reply.status})"
                  + (f", long update: {evidence['update_x1000']['outcome']}" if ctx.kit else ""),
                  figures={"body_bytes": float(len(pad)), "status": float(reply.status)}, evidence=evidence)


_REQUEST = re.compile(rb"(POST|PUT) [^ ]*update[^ ]* HTTP/1\.[01]\r\n(.*?)\r\n\r\n", re.S)


def _one_request(stream: bytes) -> bytes | None:
    """The first plaintext HTTP request carrying an update in a captured stream, with its body."""
    m = _REQUEST.search(stream)
    if m is None:
        return None
    length = re.search(rb"content-length: *(\d+)", m.group(2), re.I)
    end = m.end() + (int(length.group(1)) if length else 0)
    return stream[m.start():end] if end <= len(stream) else None


def _send_raw(address: str, payload: bytes) -> bytes:
    host, _, port = address.rpartition(":")
    with socket.create_connection((host.strip("[]"), int(port)), timeout=10) as s:
        s.sendall(payload)
        s.settimeout(5)
        out = b""
        try:
            while len(out) < 65536:
                chunk = s.recv(4096)
                if not chunk:
                    break
                out += chunk
                if b"\r\n\r\n" in out:
                    break
        except OSError:
            pass
    return out


def replay(ctx: Context) -> Result:
    """Capture the party's first update at the wire, send those exact bytes again during the job."""
    parties = horizontal_parties(ctx)
    box: dict[str, Any] = {}

    def hook(round_: int, weights: Any) -> Any:
        if round_ == 2 and "reply" not in box and plane._proxy is not None:
            stream = b"".join(c.captured_up for c in plane._proxy.snapshot().connections)
            request = _one_request(stream)
            box["tls"] = stream[:1] == b"\x16"
            target = plane._proxy.target_host + ":" + str(plane._proxy.target_port)
            payload = request if request is not None else stream[:16384]
            box["kind"] = "plaintext update request" if request is not None else "first bytes of the stream"
            box["reply"] = _send_raw(target, payload) if payload else b""
        return weights

    plane = plane_for(ctx, capture=True, update_hook=hook)  # the hook sends nothing different: it replays
    spec = horizontal_spec(ctx, [p.name for p in parties], rounds=3, timeout_s=90)
    run = start_job(ctx, spec, parties, prefix="replay", plane=plane)
    if plane.in_process:
        ctx.api.call("POST", f"/jobs/{run.job_id}/cancel")
        plane.finish(5)
        raise NotApplicable("the party kit runs inside the platform's process: no wire to replay on")
    complete_job(ctx, run, require_success=False)
    if "reply" not in box:
        return Result("error", "no update was captured to replay", evidence={"kit_error": plane.error})
    answer: bytes = box["reply"]
    status = re.match(rb"HTTP/1\.[01] (\d{3})", answer)
    accepted = bool(status and status.group(1).startswith(b"2"))
    evidence = {"replayed": box["kind"], "tls": box.get("tls"), "answer_head": answer[:120].decode("latin-1"),
                "job_state": run.job["state"]}
    if box["kind"] != "plaintext update request" and not box.get("tls"):
        return Result("error", "the captured stream is neither TLS nor plaintext HTTP: replay not judged",
                      evidence=evidence)
    return Result("fail" if accepted else "pass",
                  "the replayed update was accepted" if accepted else "the replayed bytes were refused",
                  evidence=evidence)


