"""A party agent's run keys: its organisation identity, the CA/CRL verifier, and its SecAgg client.

Why a module of its own: the agent's request handling (`sampan.deploy.party_agent`) should not also hold the
rules of which keys sign what. Vertical channels and secure aggregation sign their per-run keys with the
organisation's certificate key (its TLS key file, or an HSM key with `[hsm]`); peers' keys are checked against
the consortium CA and the CRL, re-read (and required current) at every check.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sampan.config import ConfigError
from sampan.deploy.config import PartyConfig

__all__ = ["forget_secagg", "load_run_identity", "run_verifier", "secagg_client"]


def _require_crl(config: PartyConfig) -> None:
    """A vertical or SecAgg run needs `tls.crl`: without it a revoked (e.g. stolen) member certificate would still
    authenticate the keys a coordinator substitutes, so the run is refused."""
    if not config.tls.crl:
        raise ConfigError(f"party {config.party.name!r}: tls.crl is not set in its party.toml; vertical and secure "
                          "aggregation runs check peers' certificates against the consortium CRL. Copy the CA's "
                          "crl.pem here and set tls.crl (see `sampan certs crl`)")


def load_run_identity(config: PartyConfig) -> Any:
    """The organisation identity that signs run keys (refuses a certificate issued to another name)."""
    from sampan.deploy.identity_source import load_identity

    _require_crl(config)
    return load_identity(config)


def run_verifier(config: PartyConfig) -> Any:
    """Peers' run keys are checked against the CA and the CRL; the highest CRL number accepted is kept in the
    state folder, so an older CRL put back is refused. With `tls.issued`: HSM members' run keys only from their
    HSM key."""
    from sampan.deploy.identity_source import load_verifier

    _require_crl(config)
    return load_verifier(config.tls, Path(config.party.state_dir) / "revocation_high_water.json")


def secagg_client(config: PartyConfig, job: dict[str, Any], identity: Any, verifier: Any) -> Any:
    """Secure aggregation signs its keys with the organisation's identity (as the vertical run keys) and keeps
    its per-label record of what it revealed under the state dir (0600 files), so a restarted agent still
    refuses a request that conflicts with one it answered before. Its minimum number of contributors is the
    job's announced one (never below the `[allow]` minimum: `check_job` refused a lower job), enforced by
    the party in every unmasking and signed with the survivor set, whatever the coordinator sends later."""
    from sampan.privacy.secagg import MIN_CONTRIBUTORS, SecAggClient
    from sampan.privacy.secagg.state import FileStateStore

    own = config.allow.min_contributors if config.allow is not None else None
    minimum = max(MIN_CONTRIBUTORS, int(job.get("secagg_min_contributors") or MIN_CONTRIBUTORS), own or 0)
    return SecAggClient(config.party.name, identity=identity, verifier=verifier,
                        state=FileStateStore(Path(config.party.state_dir) / "secagg"), min_contributors=minimum)


def forget_secagg(config: PartyConfig, run_id: str) -> None:
    """A closed run is complete (the coordinator resumes only unfinished runs): its secure aggregation state
    (per-label records, round locks, cached input vectors) is deleted; a marker keeps refusing the run."""
    folder = Path(config.party.state_dir) / "secagg"
    if folder.is_dir():
        from sampan.privacy.secagg.state import FileStateStore, close_run

        close_run(FileStateStore(folder), run_id)
