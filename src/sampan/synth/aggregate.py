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

Both are strategies over the coordinator's exchanges (`sampan.synth.coordinator.SynthesisChannel`):
every party of a stage is asked in ONE exchange. ``PlainSum`` asks each party for its release and adds
them; ``SecureSum`` runs the five SecAgg+ steps (keys, shares, masked release, consistency, unmask)
with the release request riding on the masked-input step, so the party masks its release before it
leaves and the coordinator never receives one in the clear. ``PlainSum`` also sums arrays already in
hand (central synthesis: one data owner, no transport).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from sampan.privacy.randomness import secure_generator
from sampan.privacy.secagg import MIN_CONTRIBUTORS, SecAggParams, SecAggServer, decode_vector
from sampan.wire import Message

__all__ = ["MASKED_KIND", "PlainSum", "ReleaseRequest", "SecureSum"]

MASKED_KIND = "synth.release"  # the SecAgg+ masked-input step is the release request itself


@dataclass
class ReleaseRequest:
    """What the fitter asks one party to release (built by a coordinator-side measurer, charged before it
    exists): the request's meta and arrays, the release's public shape, and the measurer that keeps the
    party's release record for the receipt."""

    party: str
    meta: dict[str, Any]
    arrays: dict[str, np.ndarray]
    shape: tuple[int, ...]
    measurer: Any


class Channel(Protocol):
    """The coordinator's side of the transport, as the sums need it."""

    run_id: str

    def exchange(self, kind: str, requests: Mapping[str, tuple[Mapping[str, np.ndarray], Mapping[str, Any]]],
                 ) -> dict[str, Message]: ...


def _arrays(releases: Sequence[Any]) -> list[np.ndarray] | None:
    """The releases as arrays when they are in hand (central synthesis), else None (requests to send)."""
    if all(isinstance(r, ReleaseRequest) for r in releases):
        return None
    if any(isinstance(r, ReleaseRequest) for r in releases):
        raise TypeError("a sum mixes arrays in hand and release requests")
    return [np.asarray(r) for r in releases]


def _record(request: ReleaseRequest, reply: Message) -> None:
    """Keep the party's own description of what it released (noise, charge), for the receipt."""
    record = reply.meta.get("release")
    if not isinstance(record, dict):
        raise ValueError(f"party {reply.sender!r} did not describe its release")
    request.measurer.releases.append(dict(record))




class PlainSum:
    """Sum releases the fitter can see one by one (each carries its party's full noise)."""

    def __init__(self, channel: Channel | None = None) -> None:
        self.channel = channel

    def noise_share(self, parties: int) -> float:
        """The fraction of the charged sigma each party adds itself."""
        return 1.0

    def sum_noise(self, parties: int) -> float:
        """Noise std of the sum, in units of the sigma each party is charged."""
        return math.sqrt(parties)

    def __call__(self, releases: Sequence[Any]) -> np.ndarray:
        arrays = _arrays(releases)
        if arrays is None:
            arrays = self._ask(releases)
        return np.sum(arrays, axis=0)

    def _ask(self, requests: Sequence[ReleaseRequest]) -> list[np.ndarray]:
        if self.channel is None:
            raise RuntimeError("PlainSum got release requests but has no channel to the parties")
        replies = self.channel.exchange(MASKED_KIND, {r.party: (r.arrays, r.meta) for r in requests})
        out = []
        for request in requests:
            reply = replies[request.party]
            release = np.asarray(reply.arrays.get("release"), dtype=np.float64)
            if release.shape != request.shape:
                raise ValueError(f"party {request.party!r} released shape {release.shape}, expected {request.shape}")
            _record(request, reply)
            out.append(release)
        return out

    def describe(self, parties: int) -> str:
        if parties == 1:
            return "single data owner"
        return ("sum of the parties' noisy releases, each DP on its own (every party adds the full noise it is "
                f"charged for, so the sum carries sqrt({parties}) times it)")


# Noisy counts are far below 2^30 and need no more than 2^-16 precision; K·2^30·2^16 stays inside Z_2^63.
_COUNT_PARAMS = SecAggParams(threshold=1.0, frac_bits=16, max_abs=float(2**30))


def secure_sum_floor(parties: Sequence[str], params: SecAggParams = _COUNT_PARAMS) -> None:
    """Refuse secure aggregation among fewer than three parties, saying why."""
    floor = max(MIN_CONTRIBUTORS, params.min_contributors)
    if len(parties) < floor:
        raise ValueError(f"secure aggregation needs at least {floor} parties, got {len(parties)}: with two, each "
                         "party reads the other's release from the sum (use plain aggregation, where every release "
                         "carries its own full noise)")
    params.check_capacity(len(parties))


@dataclass
class SecureSum:
    """Sum releases with SecAgg+ among ``parties``, each of which added a 1/sqrt(K) share of the noise.

    Each sum is one SecAgg+ attempt over five exchanges; the release request rides on the masked-input
    step, so the party computes its noisy release and masks it in the same handler. Every party must
    complete every step (threshold 1): a missing party fails the fit rather than release a sum that lacks
    its noise share.
    """

    parties: Sequence[str]
    channel: Channel | None = None
    params: SecAggParams = field(default_factory=lambda: _COUNT_PARAMS)
    nonce: str = field(default_factory=lambda: os.urandom(8).hex())
    rounds: int = 0

    def __post_init__(self) -> None:
        secure_sum_floor(self.parties, self.params)

    def noise_share(self, parties: int) -> float:
        return 1.0 / math.sqrt(parties)

    def sum_noise(self, parties: int) -> float:
        return 1.0

    def __call__(self, releases: Sequence[Any]) -> np.ndarray:
        if _arrays(releases) is not None or self.channel is None:
            raise TypeError("SecureSum sums release requests over a channel to the parties (arrays in hand would "
                            "already be in the clear)")
        requests = {r.party: r for r in releases}
        if sorted(requests) != sorted(self.parties):
            raise ValueError(f"expected releases of {sorted(self.parties)}, got {sorted(requests)}")
        shape = releases[0].shape
        self.rounds += 1
        round_id = f"synth-{self.rounds}"
        server = SecAggServer(self.params, list(self.parties), int(np.prod(shape)),
                              f"{self.channel.run_id}/{round_id}/{self.nonce}", secure_generator(), round_id=round_id)
        steps = ((server.advertise_requests, "secagg_keys", server.receive_keys),
                 (server.share_requests, "secagg_share", server.receive_shares),
                 (server.masked_requests, MASKED_KIND, None),
                 (server.consistency_requests, "secagg_consistency", server.receive_signature),
                 (server.unmask_requests, "secagg_unmask", server.receive_unmask))
        for make, kind, receive in steps:
            asked = make()
            if receive is None:  # the masked step carries each party's release request
                asked = {p: ({**requests[p].arrays, **arrays}, {**requests[p].meta, "secagg": dict(meta)})
                         for p, (arrays, meta) in asked.items()}
            replies = self.channel.exchange(kind, asked)
            for party in asked:
                reply = replies[party]
                if receive is None:
                    server.receive_masked(party, reply.arrays["masked"])
                    _record(requests[party], reply)
                else:
                    receive(party, reply.arrays)
        return decode_vector(server.result(), self.params).reshape(shape)

    def describe(self, parties: int) -> str:
        return (f"SecAgg+ over {parties} parties with distributed noise: each party adds 1/sqrt({parties}) of the "
                "noise it is charged for and the coordinator sees only the sum, which carries the full noise "
                "(semi-honest parties, no coordinator-party collusion, every party completes every round; keys signed "
                f"by each party's certificate; never fewer than {self.params.min_contributors} parties)")
