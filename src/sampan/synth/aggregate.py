"""How the fitter sums the parties' noisy marginals in federated synthesis: in the clear, or by SecAgg+.

- ``PlainSum``: every party's release is DP on its own (each adds the full noise sigma it is charged
  for), so the fitter may see each one. The sum of K releases carries noise sqrt(K)·sigma: federated
  synthesis is noisier than central synthesis at the same epsilon, and more so the more banks join.
- ``SecureSum``: *distributed* noise under secure aggregation. Each party adds only its share,
  N(0, sigma²/K), and masks its release with SecAgg+ (`sampan.privacy.secagg`), so the fitter learns
  the sum alone, which carries N(0, sigma²): the noise of central synthesis. Each party is charged
  sigma, the noise of what is released. Threat model, as for DP3's distributed mode: semi-honest
  parties that add their noise shares, a coordinator that does not collude with a data party, and
  all K >= 3 parties completing every round (threshold 1: with fewer, the sum would lack noise shares, so
  a dropout aborts the fit instead of releasing it; with K = 2, each bank would read the other's release
  from the sum, so secure aggregation refuses fewer than three). Each party records that its release carries
  a 1/sqrt(K) share and reveals unmask shares only when K certified parties signed the survivor set, so a
  coordinator cannot release a sum with fewer noise shares. Against a coalition of the coordinator and
  K - 1 banks, the last bank has only its own share, sigma/sqrt(K), of protection.

What each role learns: with ``PlainSum`` the fitter sees each bank's fully noised release (DP on its
own); with ``SecureSum`` only the sums over at least three banks (each bank's own release is masked)
plus what SecAgg+ reveals (`sampan.privacy.secagg`). Banks learn nothing of each other's data.

Here the parties run in one process: each release goes through the real protocol (keys, Shamir
shares, masked vectors, unmasking), and `SecureSum.seen` keeps what the coordinator received, so
tests can check that no single release reaches it. In a deployment each bank's agent masks before
sending.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from sampan.crypto.simulated_ca import simulated_consortium
from sampan.privacy.randomness import secure_generator
from sampan.privacy.secagg import MIN_CONTRIBUTORS, SecAggClient, SecAggParams, SecAggServer, decode_vector, run_secagg

__all__ = ["PlainSum", "SecureSum"]


class PlainSum:
    """Sum releases the fitter can see one by one (each carries its party's full noise)."""

    def noise_share(self, parties: int) -> float:
        """The fraction of the charged sigma each party adds itself."""
        return 1.0

    def sum_noise(self, parties: int) -> float:
        """Noise std of the sum, in units of the sigma each party is charged."""
        return math.sqrt(parties)

    def __call__(self, releases: Sequence[np.ndarray]) -> np.ndarray:
        return np.sum(releases, axis=0)

    def describe(self, parties: int) -> str:
        if parties == 1:
            return "single data owner"
        return ("sum of the parties' noisy releases, each DP on its own (every party adds the full noise it is "
                f"charged for, so the sum carries sqrt({parties}) times it)")


# Noisy counts are far below 2^30 and need no more than 2^-16 precision; K·2^30·2^16 stays inside Z_2^63.
_COUNT_PARAMS = SecAggParams(threshold=1.0, frac_bits=16, max_abs=float(2**30))


@dataclass
class SecureSum:
    """Sum releases with SecAgg+ among ``parties``, each of which added a 1/sqrt(K) share of the noise."""

    parties: Sequence[str]
    params: SecAggParams = field(default_factory=lambda: _COUNT_PARAMS)
    run_id: str = field(default_factory=lambda: os.urandom(8).hex())
    seen: list[tuple[str, str, dict[str, np.ndarray]]] = field(default_factory=list)
    rounds: int = 0

    def __post_init__(self) -> None:
        if len(self.parties) < max(MIN_CONTRIBUTORS, self.params.min_contributors):
            raise ValueError(f"secure aggregation needs at least {max(MIN_CONTRIBUTORS, self.params.min_contributors)} "
                             f"parties, got {len(self.parties)}: with two, each party reads the other's release from "
                             "the sum (use plain aggregation, where every release carries its own full noise)")
        self.params.check_capacity(len(self.parties))
        # one certificate per party from a consortium made for this sum (its CA key dropped once issued)
        verifier, identities = simulated_consortium(list(self.parties))
        self._clients = {p: SecAggClient(p, identity=identities[p], verifier=verifier,
                                         min_contributors=self.params.min_contributors) for p in self.parties}

    def noise_share(self, parties: int) -> float:
        return 1.0 / math.sqrt(parties)

    def sum_noise(self, parties: int) -> float:
        return 1.0

    def __call__(self, releases: Sequence[np.ndarray]) -> np.ndarray:
        if len(releases) != len(self.parties):
            raise ValueError(f"expected {len(self.parties)} releases, got {len(releases)}")
        shape = np.shape(releases[0])
        vectors: Mapping[str, np.ndarray] = {p: np.ravel(r) for p, r in zip(self.parties, releases)}
        self.rounds += 1
        server = SecAggServer(self.params, list(self.parties), vectors[self.parties[0]].size,
                              f"{self.run_id}/synth-{self.rounds}", secure_generator(), round_id=f"synth-{self.rounds}")

        def call(kind: str, party: str, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> dict[str, Any]:
            client = self._clients[party]
            if kind == "fit":
                # each release carries a 1/sqrt(K) noise share: the party helps unmask only a sum that K signed
                reply = {"masked": client.respond_masked(arrays, meta, vectors[party], run_id=self.run_id,
                                                         noise_parties=len(self.parties))}
            else:
                reply = client.respond(kind, arrays, meta, run_id=self.run_id)
            self.seen.append((kind, party, dict(reply)))
            return reply

        total = run_secagg(server, call)
        return decode_vector(total, self.params).reshape(shape)

    def describe(self, parties: int) -> str:
        return (f"SecAgg+ over {parties} parties with distributed noise: each party adds 1/sqrt({parties}) of the "
                "noise it is charged for and the coordinator sees only the sum, which carries the full noise "
                "(semi-honest parties, no coordinator-party collusion, every party completes every round; keys signed "
                f"by each party's certificate; never fewer than {self.params.min_contributors} parties)")
