"""The verifier's own party: a platform's party kit run in a thread, behind the recording proxy, with a tap.

The verifier registers the party with a certificate from its consortium CA (`pki.VerifierCA`), puts a
`proxy.RecordingProxy` between the kit and the address the platform gave (`Party.connect`), and runs the kit
(`kits.get_kit`) with a `RecordingTap`, so it sees every message in the clear and measures the bytes itself.
Under an egress policy (`ctx.api.egress`, the portal) the platform-named address is checked and pinned first: the
proxy relays to the pinned IP, so a platform cannot make the verifier dial an internal address (EgressRefused).
``variant`` picks the certificate the kit presents ("good", "expired", "wrong_ca", "revoked", "none") for the
negative TLS tests; ``update_hook`` makes the party Byzantine; ``leave_after`` makes it really leave the job after
that round (F-DROPOUT-RESUME: the verifier, not the platform, decides that its party is gone).

Where the evidence comes from (R16-VERDICT-8): when the platform gives no address (an in-process kit, Sampan's
default mode) the platform's own process runs the verifier's party and calls its tap, so what the tap holds is what
the platform reported about itself. `provenance` says which of the two a test's evidence rests on, and
`qualify_self_reported` writes it into the test's message and evidence, where the reports show it.
"""

from __future__ import annotations

import resource
import threading
import time
from pathlib import Path
from typing import Any

from sampan.errors import SampanError
from sampan.verify.catalogue.base import Context

__all__ = ["VerifierParty", "DataPlaneError", "PartyLeft", "SELF_REPORTED", "provenance", "qualify_self_reported"]

SELF_REPORTED = ("self-reported: in-process mode, the platform's own process ran the verifier's party and called its "
                 "tap, so this rests on messages the platform reported about itself, not on bytes the verifier "
                 "captured on a wire")
ON_THE_WIRE = ("verifier-observed: the verifier's own party, run by the verifier, on the wire through the verifier's "
               "recording proxy")


class DataPlaneError(SampanError):
    """The verifier's party could not be set up (names the party and what the platform did not give)."""


class PartyLeft(ConnectionError):
    """Raised inside the kit at the first message of a round after the one the verifier's party leaves after: the
    party answers nothing more (no reply, no update); the kit is stopped (its connection closed)."""


class _LeavingTap:
    """The verifier's tap, plus the decision to leave: a message of a round after ``after`` is not handled."""

    def __init__(self, inner: Any, after: int, on_leave: Any) -> None:
        self.inner, self.after, self.on_leave = inner, after, on_leave
        self.asked: list[tuple[str, int]] = []  # (kind, round) the platform still sent after the party left
        self.left_at: int | None = None

    def _leave(self, kind: str, round: int) -> None:
        self.asked.append((kind, int(round)))
        if self.left_at is None:
            self.left_at = int(round)
            self.on_leave()
        raise PartyLeft(f"the verifier's party left after round {self.after} (asked for {kind!r} of round {round})")

    def sent(self, kind: str, round: int, payload: Any) -> None:
        if int(round) > self.after:
            self._leave(kind, round)
        self.inner.sent(kind, round, payload)

    def received(self, kind: str, round: int, payload: Any) -> None:
        if int(round) > self.after:
            self._leave(kind, round)
        self.inner.received(kind, round, payload)


def provenance(plane: Any) -> str:
    """Where a test's party-side evidence comes from: the platform's own process (in-process kit) or the wire."""
    return SELF_REPORTED if plane is not None and plane.in_process else ON_THE_WIRE


def qualify_self_reported(result: Any, plane: Any) -> Any:
    """Say in ``result`` (message and evidence) where its party-side evidence comes from; a verdict resting on what
    the platform reported about itself carries "self-reported" in its message (R16-VERDICT-8)."""
    if plane is None:
        return result
    result.evidence["evidence_source"] = provenance(plane)
    result.evidence["party_in_process"] = bool(plane.in_process)
    if plane.in_process and "self-reported" not in result.message:
        result.message += (" [self-reported: the platform's process ran the verifier's party (in-process mode); "
                           "nothing was captured on a wire]")
    return result


def _peak_rss() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return float(int(line.split()[1]) * 1024)
    return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)


class VerifierParty:
    """One verifier-operated party of one job (see the module note). Not reusable across jobs."""

    def __init__(self, ctx: Context, *, variant: str = "good", update_hook: Any = None,
                 capture: bool = False, leave_after: int | None = None) -> None:
        from sampan.verify.kits import RecordingTap, get_kit
        from sampan.verify.pki import VerifierCA

        if not ctx.kit:
            raise DataPlaneError("the platform has no party kit: the verifier cannot run a party")
        self.ctx = ctx
        self.ca: VerifierCA = ctx.once("verifier_ca", VerifierCA)
        self.ca_pem: str = self.ca.ca_pem
        self.variant = variant
        self.kit = get_kit(ctx.kit, update_hook=update_hook)
        self.tap = RecordingTap()
        self.capture = capture
        self.stop = threading.Event()
        self.leaving = _LeavingTap(self.tap, leave_after, self.stop.set) if leave_after is not None else None
        self.error: str | None = None
        self.wire: dict[str, Any] | None = None
        self.usage: dict[str, float] = {}
        self.snapshot: Any = None
        self._proxy: Any = None
        self._thread: threading.Thread | None = None
        self._party = ""
        self._data: Any = None
        self._connect: Any = None
        self._good: Any = None
        self.in_process = False  # True when the platform gave no address (its kit runs in the platform's process)

    def certificate_for(self, party: str) -> str:
        """The certificate registered for ``party`` (always a good one; the kit may present another)."""
        self._good = self.ca.client_cert(party, "good")
        return str(self._good.cert_pem)

    def prepare(self, party: str, data: dict[str, Any] | None, connect: dict[str, Any] | None) -> None:
        from sampan.verify.api import PartyConnect, TableData
        from sampan.verify.proxy import RecordingProxy

        if data is None:
            raise DataPlaneError(f"party {party!r}: the verifier's party needs its rows")
        self._party, self._data = party, TableData.model_validate(data)
        if connect is None:
            # an in-process kit (the platform gave no address): no wire to measure, no TLS to test
            self.in_process = True
            self._connect = PartyConnect(address="127.0.0.1:9", protocol="in-process")
            return
        given = PartyConnect.model_validate(connect)
        upstream = given.address
        egress = getattr(self.ctx.api, "egress", None)
        if egress is not None:  # the platform names this address: check it and relay to the pinned IP only
            upstream = egress.pin_address(given.address).address
        self._proxy = RecordingProxy(upstream, capture=self.capture).start()
        host = given.address.rpartition(":")[0].strip("[]")
        self._connect = PartyConnect(address=self._proxy.address, protocol=given.protocol,
                                     server_name=given.server_name or host, ca_pem=given.ca_pem)

    def _tls(self) -> Any:
        from sampan.verify.kits import ClientTLS

        if self.variant == "none":
            return ClientTLS(cert_pem=None, key_pem=None, ca_pem=None)
        cert = self._good if self.variant == "good" and self._good is not None else \
            self.ca.client_cert(self._party, self.variant)  # type: ignore[arg-type]
        return ClientTLS(cert_pem=cert.cert_pem, key_pem=cert.key_pem, ca_pem=None, crl_pem=self.ca.crl_pem)

    def start(self, job_id: str) -> None:
        tls = self._tls()

        def body() -> None:
            before = resource.getrusage(resource.RUSAGE_THREAD)
            start = time.monotonic()
            try:
                tap = self.leaving if self.leaving is not None else self.tap
                self.kit.run(job_id, self._party, self._data, self._connect, tls, tap, self.stop)
            except BaseException as exc:  # noqa: BLE001 (the kit's refusal is evidence, not a crash)
                self.error = f"{type(exc).__name__}: {exc}"
            after = resource.getrusage(resource.RUSAGE_THREAD)
            self.usage = {"cpu_s": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
                          "wall_s": time.monotonic() - start, "peak_rss": _peak_rss()}

        self._thread = threading.Thread(target=body, name=f"verifier-party-{self._party}", daemon=True)
        self._thread.start()

    def wait_kit(self, timeout_s: float) -> bool:
        """True when the kit has ended within ``timeout_s``."""
        if self._thread is None:
            return True
        self._thread.join(timeout_s)
        return not self._thread.is_alive()

    def finish(self, grace_s: float = 30.0) -> None:
        """After the job ended: let the kit finish, stop it, and read the proxy's counts."""
        if self._thread is not None and not self.wait_kit(grace_s):
            self.stop.set()
            self.wait_kit(10.0)
        self.stop.set()
        if self._proxy is not None:
            snap = self._proxy.snapshot()
            self.snapshot = snap
            self.wire = {"bytes_up": int(snap.bytes_up), "bytes_down": int(snap.bytes_down),
                         "connections": len(snap.connections)}
            self._proxy.stop()
            self._proxy = None
