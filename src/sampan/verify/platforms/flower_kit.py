"""The "flower" party kit: the verifier's own party as a real Flower client, dialing through the verifier's proxy.

The client runs in Flower's venv (flower_worker.py, `client --in`); before each update leaves, it asks this kit
for the weights to send, so the verifier's `update_hook` (Byzantine tests) applies and the tap sees exactly what
went on the wire, in the clear (Flower sends parameters as plain NumPy bytes inside its gRPC messages; no SecAgg+
mod here). Tap kinds, keyed as the weak kit's: sent "stats" (round 0: n, sum, sumsq of the party's features,
asked by the server to standardise), received "model" (weights, mean, scale), sent "update" (weights, n), received
"evaluate" (the model Flower evaluates after each round, keyed as "model": the last one is the final model).
`weights` is always [coefficients..., intercept], and so is the update hook's argument.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from sampan.errors import SampanError
from sampan.verify.api import PartyConnect, TableData
from sampan.verify.kits import ClientTLS, Tap, UpdateHook
from sampan.verify.platforms.flower_proc import Worker, write_text


class FlowerKitError(SampanError):
    """The verifier's Flower party could not take part (names the party and what Flower said)."""

    category = "flower party kit"


def _arrays(payload: Mapping[str, Any]) -> dict[str, np.ndarray]:
    return {str(k): np.asarray(v) for k, v in payload.items()}  # JSON numbers: float64, counts int64


class FlowerKit:
    """Runs one verifier-operated party of a Flower job until the server ends the run or `stop` is set."""

    name = "flower"

    def __init__(self, *, update_hook: UpdateHook | None = None, max_wait_s: float = 120.0) -> None:
        self.update_hook = update_hook
        self.max_wait_s = max_wait_s

    def run(self, job_id: str, party: str, data: TableData, connect: PartyConnect, tls: ClientTLS | None,
            tap: Tap, stop: threading.Event) -> None:
        # Flower's gRPC client cannot present a client certificate: tls.cert_pem/key_pem go unused (the adapter
        # claims no mTLS); the CA checks the server when the platform gave one (or the verifier overrides it).
        root = (tls.ca_pem if tls is not None and tls.ca_pem else None) or connect.ca_pem
        folder = Path(tempfile.mkdtemp(prefix="sampan-flower-kit-"))
        worker: Worker | None = None
        try:
            data_path = folder / "data.json"
            data_path.write_text(data.model_dump_json(), encoding="utf-8")
            root_spec = {"root_cert": str(write_text(folder / "ca.pem", root))} if root else {}
            worker = Worker("client", {**root_spec, "address": connect.address, "party": party, "data": str(data_path),
                                       "max_wait_s": self.max_wait_s}, folder, "kit", replies=True)
            watcher = threading.Thread(target=self._watch_stop, args=(stop, worker), daemon=True)
            watcher.start()
            finished, error = self._serve(worker, tap)
            if stop.is_set():
                return
            if error is not None or not finished:
                raise FlowerKitError(f"party {party!r} (job {job_id}): Flower client failed: "
                                     f"{error or worker.log_tail()}")
        finally:
            if worker is not None:
                worker.kill()
            shutil.rmtree(folder, ignore_errors=True)

    @staticmethod
    def _watch_stop(stop: threading.Event, worker: Worker) -> None:
        while worker.proc.poll() is None:
            if stop.wait(0.2):
                worker.kill()
                return

    def _serve(self, worker: Worker, tap: Tap) -> tuple[bool, str | None]:
        finished = False
        error: str | None = None
        for event in worker.events():
            op = event.get("op")
            if op == "tap":
                payload = _arrays(event.get("payload", {}))
                if event.get("direction") == "sent":
                    tap.sent(str(event["kind"]), int(event["round"]), payload)
                else:
                    tap.received(str(event["kind"]), int(event["round"]), payload)
            elif op == "update":
                weights = np.asarray(event["weights"], dtype=np.float64)
                if self.update_hook is not None:
                    # sent as the hook made it, NaN or wrong length included: judging it is the platform's job
                    weights = np.asarray(self.update_hook(int(event["round"]), weights.copy()),
                                         dtype=np.float64).reshape(-1)
                worker.reply(weights=weights.tolist())
            elif op == "finished":
                finished = True
            elif op == "error":
                error = str(event.get("message"))
        return finished, error


__all__ = ["FlowerKit", "FlowerKitError"]
