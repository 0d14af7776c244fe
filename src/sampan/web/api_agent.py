"""Agent endpoints, authenticated by the agent's mTLS client certificate (not by a person's token).

A party agent may fetch the spec of a job it is asked to serve and the approvals recorded for it, so it can
compare what the coordinator relays with what the control plane shows its operator. Threat model: the
certificate must verify against the consortium CA and CRL (`AppSettings.agent_verifier`) and its name must be a
party the job reads from; any other caller (no certificate, another party's certificate, a person's token) gets
403 and learns nothing about the job. The certificate comes from the ASGI TLS extension
(``scope["extensions"]["tls"]["client_cert_chain"]``), which the server fills after a verified handshake.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from sqlalchemy import select

from sampan.web import db
from sampan.web import schemas as s
from sampan.web.api import API_PREFIX, plane_of
from sampan.web.errors import Forbidden
from sampan.web.service_base import row_dict

__all__ = ["build_agent_router", "agent_of_request"]


def agent_of_request(request: Request) -> str:
    """The party name of the verified client certificate; 403 without one or when it does not verify."""
    from sampan.crypto.identity import IdentityError, certificate_identity, load_certificate

    verifier = getattr(request.app.state, "agent_verifier", None)
    chain = ((request.scope.get("extensions") or {}).get("tls") or {}).get("client_cert_chain") or []
    if verifier is None or not chain:
        raise Forbidden("agent endpoints need a client certificate of the consortium (mutual TLS)")
    pem = chain[0].encode("ascii") if isinstance(chain[0], str) else bytes(chain[0])
    try:
        name, _role = certificate_identity(load_certificate(pem))
        verifier.check(name, pem, role="party")
    except (IdentityError, ValueError) as exc:
        raise Forbidden(f"the client certificate does not verify ({exc})") from None
    return name


def build_agent_router() -> APIRouter:
    r = APIRouter(prefix=f"{API_PREFIX}/agent", tags=["agents"],
                  responses={code: {"model": s.Error} for code in (403, 422)})

    @r.get("/jobs/{job_id}", response_model=s.AgentJob)
    def agent_job(job_id: Annotated[int, Path(ge=1, le=s.MAX_ID)], request: Request) -> dict[str, Any]:
        party = agent_of_request(request)
        plane = plane_of(request)
        with plane.engine.connect() as c:
            row = c.execute(select(db.jobs).where(db.jobs.c.id == job_id)).first()
            if row is None or party not in (row.spec.get("parties") or []):  # absent or not its job: one answer
                raise Forbidden(f"party {party!r} is not a party of job {job_id}")
            decisions = [row_dict(d) for d in c.execute(select(db.approvals).where(
                db.approvals.c.job_id == job_id, db.approvals.c.spec_hash == row.spec_hash))]
        return {"job_id": row.id, "spec": row.spec, "spec_hash": row.spec_hash, "status": row.status,
                "approvals": [d["approval"] for d in decisions if d["approved"] and d["approval"]]}

    return r
