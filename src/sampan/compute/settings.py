"""The ``[compute]`` table (party.toml and simulation configs): which engine runs this party's row blocks.

Why one model for both files: a deployed party and a simulated one choose their engine with the same words,
and the checks (private address, TLS folder) live in one place.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from sampan.compute.engine import Engine, LocalEngine

__all__ = ["ComputeSettings", "make_engine"]


class ComputeSettings(BaseModel):
    """[compute]: ``engine = "local"`` (default, one process) or ``"ray"`` (the party's own cores/machines)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    engine: Literal["local", "ray"] = Field(default="local", description="local: blocks run in the party process; "
                                            "ray: as Ray tasks (pip install 'sampan[ray]') inside the party only")
    num_workers: int = Field(default=2, ge=1, le=4096,
                             description="ray without address: CPUs of the private local instance")
    address: str | None = Field(default=None, description="ray: the party's own Ray cluster (GCS 'ip:port' or "
                                "'ray://ip:port') on a loopback or private IP; absent: a private instance on "
                                "127.0.0.1")
    tls: bool = Field(default=True, description="ray: mutual TLS with certificates from a CA private to this party")
    tls_dir: str | None = Field(default=None, description="ray: folder with ca.pem, node.pem, node.key "
                                "(sampan.compute.issue_engine_certs); absent with a local instance: an ephemeral "
                                "CA made once per process, removed at exit")

    @field_validator("address")
    @classmethod
    def _private(cls, value: str | None) -> str | None:
        if value is not None:
            from sampan.compute.ray_engine import check_private_address  # no ray import: only the address check

            check_private_address(value)
        return value

    @model_validator(mode="after")
    def _tls_off_only_on_loopback(self) -> ComputeSettings:
        if not self.tls and self.address is not None:
            from sampan.compute.ray_engine import check_tls_off_allowed

            check_tls_off_allowed(self.address)
        return self

    def resolved(self, base: Path) -> ComputeSettings:
        """``tls_dir`` relative to the config file's folder."""
        if self.tls_dir is None or Path(self.tls_dir).is_absolute():
            return self
        return self.model_copy(update={"tls_dir": str(base / self.tls_dir)})


def make_engine(settings: ComputeSettings | None, *, party: str = "party") -> Engine:
    """The engine a party's ``[compute]`` asks for (the local one when there is no table)."""
    if settings is None or settings.engine == "local":
        return LocalEngine()
    from sampan.compute.ray_engine import RayEngine

    return RayEngine(settings.address, num_workers=settings.num_workers, tls=settings.tls,
                     tls_dir=settings.tls_dir, party=party)
