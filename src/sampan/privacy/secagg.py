"""Secure aggregation that survives dropouts (SecAgg+: Bell et al. 2020, after Bonawitz et al. 2017).

The coordinator learns the sum of the surviving parties' vectors and nothing else about any one of
them. Every party u turns its float vector x_u into fixed-point ring elements of Z_2^64 and sends

    y_u = x_u + PRG(b_u) + sum_{v in N(u)} sign(u, v) * PRG(s_uv)      (mod 2^64)

where N(u) are its neighbours in a public k-regular graph (a Harary graph on a random ring order;
the complete graph when the consortium is small), s_uv is an X25519 agreement between u's and v's mask
keys (so u and v draw identical masks; sign(u, v) = +1 if u < v, else -1, so they cancel in a sum), and
b_u is a private self-mask seed. One attempt has five steps, each one message per party through the
coordinator:

0. advertise — two X25519 public keys per party, c (to encrypt shares) and s (pairwise masks), and a
   SHA-256 commitment to b_u, all signed with the party's organisation certificate key over (run id,
   label, role, name, keys) (`sampan.crypto.identity`). The keys come from the party's master secret
   and a nonce the party draws for this label, so they never repeat, even if a label does;
1. share keys — each party checks every neighbour's signature against the consortium CA (a key the
   coordinator substituted is refused with an error naming the peer), checks that the neighbour graph
   the coordinator sends is symmetric, k-regular and connected with its own neighbours as its share
   holders (and records the graph itself),
   Shamir-shares (t of its k neighbours, t > k/2) its mask key s_u and its seed b_u, and seals each
   neighbour's pair of shares, with the graph's digest, under a ChaCha20-Poly1305 key agreed with that
   neighbour's c key; the coordinator relays ciphertext;
2. masked input — each party sends y_u, masking against the (verified) neighbours that completed step 1,
   at least t of those it gave shares to. The request names the round the attempt belongs to; the party
   binds the attempt to that round and to a digest of the public inputs x_u is computed from (the global
   model: its caller computes it), and masks the x_u of its first attempt of that round (or on that model)
   if there was one — cached and persisted before the masked input leaves;
3. consistency (Bonawitz et al.'s round 4) — the coordinator sends the survivor set U3 (who sent a
   masked input); each survivor checks that U3 is connected inside its recorded graph and that it masked
   against every neighbour in U3 (else the masks would cancel inside parts of U3 and unmasking would
   reveal each part's sum), then signs (run id, label, round, model digest, graph digest, m_min, U3) and
   never signs a different U3 for a label;
4. unmasking — each signer checks that a majority (its t) of its own neighbours, and at least
   min_contributors parties with itself (noise_parties under distributed DP), signed that same U3 for
   the same round and model (and that |U3| >= m_min), then reveals, per neighbour v, the share of b_v if
   v is in U3, or the share of s_v if it is not, and only shares dealt under its own graph. Never both: which kind it revealed for whom is recorded
   durably (`sampan.privacy.secagg_state`) before the shares leave, and a request that would reveal the
   other kind is refused, also after a restart. Before the shares leave it also locks the round to this
   (U3, graph) and the model and the input itself to this U3: in any later attempt of the round (or on the
   model) it signs and reveals only for the same U3 (and, in the round, the same graph); and the same
   input vector — named by an HMAC under the party's own lock key, of the encoded vector and of its
   content before public scaling — is unmasked for that U3 only, in any round, under any model digest,
   in any run, and so is the model itself (its canonical digest, whatever the training or evaluation
   settings: these locks outlive `close_run`).

The coordinator then removes every survivor's self-mask (b_v rebuilt from t shares) and, for every
party that dropped before masking, the pairwise masks its neighbours added (s_v rebuilt, s_uv
recomputed). A party that dropped *after* masking is in the sum: its b is rebuilt from its
neighbours' shares. If too few parties are left at any step — fewer than m_min = max(min_contributors,
ceil(threshold·n)) with min_contributors >= 3, because with two contributors each one can subtract its
own input from the sum and read the other's — or a rebuilt key does not match what its owner
advertised, the attempt aborts with `SecAggAbort` naming the survivors; the workflow may retry with
them under a fresh label, and fails the round with a clear error below min_contributors.

Fixed point: values are clamped to ±max_abs and encoded as round(x·2^f) in Z_2^64. With m parties the
true sum stays below m·max_abs·2^f, which `SecAggParams.check_capacity` keeps under 2^63, so the
modular sum decodes to the exact sum of the encoded values (error ≤ m·2^-(f+1) per coordinate).

Threat model:
- Parties are semi-honest about their inputs (they may send any vector within the clamp: secure
  aggregation hides inputs, it does not validate them; robust aggregation needs the individual updates,
  so it is refused together with secure aggregation). The coordinator may be malicious towards the
  protocol: relay altered keys, lie about who dropped, send different survivor sets to different
  parties, replay or repeat requests, or restart and re-run an attempt. It holds no member's
  certificate key and does not collude with a data party.
- Key substitution is refused (every public key is signed by its owner's certificate, checked against
  the consortium CA and CRL before any mask or channel is derived from it). A repeated or conflicting
  request is refused: a party masks at most one input per label, signs at most one survivor set per
  label, and reveals at most one kind of share per neighbour per label; this state is written before
  the answer leaves and survives restarts (deployments keep it under the party's state dir).
- Different survivor sets sent to different parties are caught in the consistency round: a party
  reveals nothing unless a majority (its own t) of its own neighbours, and min_contributors parties
  with itself, signed exactly the U3 it signed; honest parties sign one U3 per label, so two sets
  cannot both win (on the complete graph: a majority of everyone; on a sparse SecAgg+ graph: of each
  neighbourhood, as in Bell et al.). Independently, each party shares its secrets with a majority
  threshold (t > k/2, checked by the party), so the coordinator cannot gather t b-shares of v from
  one group and t s-shares from another.
- Differencing across attempts of one round is refused: a coordinator that completes an attempt over
  U, claims it failed and retries the round over U minus v would read v's input as the difference. Every
  party that revealed unmask shares for U refuses another U3 in that round and on that model (round and
  model digest are signed with U3, so the coordinator cannot name them differently to different
  parties), and unmasking needs revealers among U3 forming a majority of every share holder group, while
  the first attempt's revealers refuse the second: for U3 and U3 minus v these would be two disjoint
  majorities of one set, which do not exist (with t > k/2 on a k-regular graph each needs > |U3|/2).
  The graph is the coordinator's to draw, so each party checks that its graph is k-regular, signs its
  digest with U3 and reveals only shares dealt under the same graph: revealers then reveal at most k
  shares each for parties needing more than k/2 each, whatever graphs were handed to whom (without
  these checks a coordinator could make a few "hub" parties hold everyone's shares, unmask with them,
  and use other hubs in the next attempt). The graph must also be connected, U3 connected inside it,
  and each party must have masked against all its neighbours in U3: with two components (or parties
  told to mask only inside their component) one unmasking reveals each component's sum, and re-drawn
  components over the same U3 isolate one input (review R7-1). With these checks every unmasking
  reveals the sum over all of U3 and nothing else, so a retry with the same U3 under another graph
  would sum the same cached inputs again (nothing new); a round's lock fixes the graph anyway.
  A retry with the same U3 sums the same cached inputs (nothing new), a retry after a dropout before
  anyone revealed works, and the workflow stores an unmasked sum before anything else, so a crash-resume
  never needs a second set.
- Differencing across rounds, model digests and runs with the *same* inputs is refused: a coordinator
  that re-sends a model under a digest of its own (an identity scaler, a new round name) or in a new
  run, over U minus v, would get exactly the same inputs of everyone but v. Parties digest the model
  canonically, and each input is locked by an HMAC of itself (not of the request) to the first U3 it
  was unmasked for; its content before the public n/N weighting is locked too, so rescaling every
  input by a new total_rows does not give a new input.
- Differencing across runs with the same model under other settings is refused (review R11): inputs
  computed from one model under another learning rate (one full-batch step at lr/2 is exactly half the
  update) or another binning (a 40-bin histogram merges into the 20-bin one) are known linear maps of
  the first ones, with new bytes. The caller's canonical model digest (`basis`: global model, scaler,
  model config and the input's kind — no training or evaluation settings, no run, no weights) is locked
  too (`model:<HMAC>`, never deleted by `close_run`): one model is unmasked for one survivor set only,
  in any run, under any settings. This holds under distributed DP3 as well, although each of its
  attempts is freshly noised and charged (a difference would be a charged release): the lock costs
  honest runs nothing (the workflow starts each run under secure aggregation from a model drawn from
  its seed, so distinct runs aggregate distinct models) and it keeps the claim "one sum per model"
  independent of the noise. A second run from the same start over another party set is refused with an
  error that says to use another seed.
- NOT covered — multi-round differencing with perturbed models (inherent to secure aggregation under a
  coordinator that picks the model and the participants each round; So et al. 2021, "multi-round privacy
  leakage"): a coordinator that sends a model perturbed by one ulp gets new input vectors (the locks do
  not apply) whose updates are almost identical to the previous ones; unmasking the sum over U and then
  over U minus v gives v's update to within that perturbation. **Without DP3, SecAgg does not protect an
  update from a coordinator that differences rounds with perturbed models**; it protects each update
  from anyone who sees a single sum, and from the exact replays above. With distributed DP3, every
  release (every round and every attempt) is noised by the parties and charged to their ledgers, so such
  a difference is a noised, accounted release. A later fix could be model chaining: parties check that
  each new model follows from the previous aggregate they helped unmask (not built).
- Up to t - 1 colluding neighbours of a party learn nothing about its secrets; t of them plus the
  coordinator could unmask it. Dropouts are assumed independent of the data; the set of survivors is
  public. A coordinator can still drop honest parties to shrink the sum, but never below m_min >= 3
  contributors: each contributor learns the sum of the others (m_min - 1 >= 2 of them) from the model.

What each role learns:
- Coordinator: each party's certificate and signed public keys, sealed envelopes it cannot open, masked
  vectors (uniform in Z_2^64 to it), who answered each step, the parties' signatures over U3, per party
  at most one of its two secrets (b if it is in U3, s if it is not; the other still hides its input),
  and one sum per round (and per model under any settings, and per identical input, in any run) over one connected U3 of
  at least m_min contributors, however often the round is retried. Under DP3 that sum is already noised.
  Without DP3, sums of rounds on models it perturbed can be differenced (see "NOT covered").
- A party: its neighbours' certificates and public keys, one Shamir share of each neighbour's b and s
  (fewer than the t needed), the survivor set U3 and its signatures, and whatever the released model
  reveals about the sum.

DP3 composition: each party adds its share of the Gaussian noise before masking
(`sampan.privacy.dp3.party_release`), with variance σ²/m_min where m_min is the least number of
masked inputs for which the round can complete. The party records that count (noise_parties) with its
input, refuses one above the m_min it shared with, and helps unmask only when that many *certified*
parties signed U3 (names in U3 alone prove nothing: a coordinator could pad it with parties that do not
exist). Any completed round therefore carries noise of
variance at least σ²; when nobody drops, σ²·m/m_min (the price of tolerating dropouts). The
coordinator only ever sees the noised sum. The noise is a floating-point Gaussian rounded to the
2^-f grid (rounding is post-processing); a discrete Gaussian on the grid would also close the
floating-point side channels of continuous samplers (Mironov 2012) and is not done here.
"""

from __future__ import annotations

import functools
import hashlib
import math
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from sampan.crypto.channel import ChannelError, PartyKeys, SealedChannels, prg_uint64
from sampan.crypto.identity import (IdentityError, IdentityVerifier, PartyIdentity, SignedKeys, sign_keys,
                                    signed_keys_payload, verify_keys)
from sampan.crypto import shamir
from sampan.privacy.secagg_state import (LabelRecord, MemoryStateStore, RoundRecord, SecAggStateStore, close_run,
                                        closed_key, model_key, prune_vectors, vector_key)

__all__ = [
    "SecAggAbort", "SecAggRefused", "SecAggParams", "SecAggClient", "SecAggServer", "harary_graph",
    "choose_neighbours", "encode_vector", "decode_vector", "KEY_BYTES", "STEP_KINDS", "MIN_CONTRIBUTORS",
    "run_secagg",
]

KEY_BYTES = 32
MIN_CONTRIBUTORS = 3  # with two contributors, each reads the other's input from the sum
_MASK_LABEL = "secagg-pairwise-mask"
_ROLE = "client"  # the signer's role in the protocol (signed with its keys)
# message kinds of the five steps; the masked-input step travels as the workflow's own request ("fit")
STEP_KINDS = ("secagg_keys", "secagg_share", "fit", "secagg_consistency", "secagg_unmask")


class SecAggAbort(RuntimeError):
    """Too few parties at some step (or an inconsistent reconstruction): the round must be retried.

    `survivors` are the parties that answered the step at which the round stopped — the natural set
    to retry with; `stage` names the step.
    """

    def __init__(self, stage: str, reason: str, survivors: Iterable[str]) -> None:
        super().__init__(f"secure aggregation aborted at {stage}: {reason}")
        self.stage, self.reason, self.survivors = stage, reason, sorted(survivors)


class SecAggRefused(ChannelError):
    """A party refuses a request that could reveal more than the protocol allows (names party and label)."""


@dataclass(frozen=True)
class SecAggParams:
    """Public parameters of one secure aggregation (the same for every party).

    threshold: share of a party's share holders needed to rebuild its secrets (t = ceil(threshold·k));
      on a full graph, k = n - 1. It is also the least share of the parties that advertised keys whose
      masked input must arrive.
    min_contributors: the least number of inputs ever summed (>= 3); m_min = max(min_contributors,
      ceil(threshold·n)).
    neighbours: k, the degree of the neighbour graph (even), or None for the complete graph.
    """

    threshold: float = 0.6
    neighbours: int | None = None
    frac_bits: int = 32
    max_abs: float = 1e4
    min_contributors: int = MIN_CONTRIBUTORS

    def __post_init__(self) -> None:
        if not 0.5 < self.threshold <= 1:
            raise ValueError(f"secure aggregation threshold must be in (0.5, 1], got {self.threshold}")
        if self.neighbours is not None and (self.neighbours < 2 or self.neighbours % 2):
            raise ValueError(f"neighbours must be an even number >= 2, got {self.neighbours}")
        if not 1 <= self.frac_bits <= 52 or self.max_abs <= 0:
            raise ValueError("frac_bits must be in [1, 52] and max_abs > 0")
        if self.min_contributors < MIN_CONTRIBUTORS:
            raise ValueError(f"secure aggregation min_contributors must be at least {MIN_CONTRIBUTORS} (with two, "
                             f"each contributor reads the other's input from the sum), got {self.min_contributors}")

    def check_capacity(self, parties: int) -> None:
        """The sum of `parties` clamped, encoded values must stay inside the signed ring."""
        bound = parties * self.max_abs * 2.0**self.frac_bits
        if bound >= 2.0**63:
            raise ValueError(
                f"secure aggregation of {parties} parties with max_abs {self.max_abs} and frac_bits {self.frac_bits} "
                f"could overflow Z_2^64 ({bound:.3g} >= 2^63): lower max_abs or frac_bits")

    def min_live(self, advertised: int) -> int:
        return max(self.min_contributors, math.ceil(self.threshold * advertised - 1e-9))

    def share_threshold(self, holders: int) -> int:
        return max(1, min(holders, math.ceil(self.threshold * holders - 1e-9)))


def choose_neighbours(parties: int, threshold: float, expected_dropout: float, target: float = 1e-4) -> int | None:
    """Smallest even degree k whose round fails with probability <= target under iid dropouts.

    A round fails if some party keeps fewer than t = ceil(threshold·k) live neighbours, or if the
    survivors' graph splits (k/2 consecutive ring neighbours all drop); a union bound over parties is
    used. None (the complete graph) when no k < n - 1 meets the target.
    """
    from scipy.stats import binom

    if parties <= 3:
        return None
    start = max(2, 2 * math.ceil(math.log2(parties) / 2))  # even, about log2(n): Bell et al.'s O(log n)
    for k in range(start, parties - 1, 2):
        t = math.ceil(threshold * k - 1e-9)
        p_short = float(binom.cdf(t - 1, k, 1.0 - expected_dropout))
        p_split = expected_dropout ** (k // 2) if expected_dropout > 0 else 0.0
        if parties * (p_short + p_split) <= target:
            return k
    return None


def harary_graph(parties: Sequence[str], k: int | None, rng: np.random.Generator) -> dict[str, set[str]]:
    """Neighbours of each party: the k-regular Harary graph on a random ring order, or complete.

    Public; the coordinator draws it (from the run seed, so a resumed run draws the same graph).
    """
    names = sorted(parties)
    n = len(names)
    if k is None or k >= n - 1:
        return {p: set(names) - {p} for p in names}
    order = [names[i] for i in rng.permutation(n)]
    graph: dict[str, set[str]] = {p: set() for p in names}
    for i, p in enumerate(order):
        for step in range(1, k // 2 + 1):
            q = order[(i + step) % n]
            graph[p].add(q)
            graph[q].add(p)
    return graph


def _connected(nodes: set[str], graph: Mapping[str, set[str]]) -> bool:
    """The coordinator's own check before consistency (parties check for themselves with `_spans`)."""
    if not nodes:
        return True
    start = next(iter(nodes))
    seen, stack = {start}, [start]
    while stack:
        for q in graph[stack.pop()] & nodes:
            if q not in seen:
                seen.add(q)
                stack.append(q)
    return seen == nodes


def _spans(nodes: set[str], graph: Mapping[str, Sequence[str]]) -> bool:
    """A party's check: `nodes` form one connected component of `graph` restricted to them. If not, the masks
    of each component cancel inside it, and unmasking would reveal each component's sum."""
    if not nodes or not nodes <= set(graph):
        return False
    start = min(nodes)
    seen, stack = {start}, [start]
    while stack:
        for q in graph[stack.pop()]:
            if q in nodes and q not in seen:
                seen.add(q)
                stack.append(q)
    return seen == nodes


def encode_vector(x: np.ndarray, params: SecAggParams) -> np.ndarray:
    """Clamp to ±max_abs, then round(x·2^f) as elements of Z_2^64 (negatives wrap)."""
    clamped = np.clip(np.asarray(x, dtype=np.float64), -params.max_abs, params.max_abs)
    if not np.all(np.isfinite(clamped)):
        raise ValueError("secure aggregation input contains NaN")
    return np.rint(clamped * 2.0**params.frac_bits).astype(np.int64).view(np.uint64)


def decode_vector(u: np.ndarray, params: SecAggParams) -> np.ndarray:
    return np.asarray(u, dtype=np.uint64).view(np.int64).astype(np.float64) / 2.0**params.frac_bits


def _public(private: X25519PrivateKey) -> bytes:
    return private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _u8(raw: bytes) -> np.ndarray:
    return np.frombuffer(raw, dtype=np.uint8).copy()


def _raw(array: np.ndarray, size: int | None = None) -> bytes:
    raw = np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    if size is not None and len(raw) != size:
        raise ValueError(f"expected {size} bytes, got {len(raw)}")
    return raw


def _sign(me: str, peer: str) -> int:
    return 1 if me < peer else -1


def _mask_channels(owner: str, owner_secret: bytes, peers: Mapping[str, bytes], label: str) -> SealedChannels:
    """Pairwise mask keys s_uv of `owner` with each peer: both ends (and the coordinator, once it rebuilt a
    dropped party's key) derive the same PRG key from the X25519 agreement."""
    return SealedChannels(owner, PartyKeys(X25519PrivateKey.from_private_bytes(owner_secret)), dict(peers),
                          run_id=f"{label}|mask")


def _stack(rows: Sequence[bytes], width: int) -> np.ndarray:
    """Equal-size byte strings as one (n, width) uint8 array: one wire array instead of n."""
    out = np.zeros((len(rows), width), dtype=np.uint8)
    for i, row in enumerate(rows):
        if len(row) != width:
            raise ValueError(f"row {i} has {len(row)} bytes, expected {width}")
        out[i] = np.frombuffer(row, dtype=np.uint8)
    return out


def _rows(array: np.ndarray, count: int, width: int | None = None) -> list[bytes]:
    a = np.ascontiguousarray(array, dtype=np.uint8)
    if a.ndim != 2 or a.shape[0] != count or (width is not None and a.shape[1] != width):
        raise ValueError(f"expected a ({count}, {width or 'w'}) byte array, got shape {a.shape}")
    return [a[i].tobytes() for i in range(count)]


def _pack(rows: Sequence[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """Byte strings of any length as (concatenated bytes, lengths)."""
    return _u8(b"".join(rows)), np.array([len(r) for r in rows], dtype=np.int64)


def _unpack(data: np.ndarray, lengths: np.ndarray, count: int) -> list[bytes]:
    raw, sizes = _raw(data), [int(x) for x in np.asarray(lengths).ravel()]
    if len(sizes) != count or any(x < 0 for x in sizes) or sum(sizes) != len(raw):
        raise ValueError(f"expected {count} packed byte strings")
    out, at = [], 0
    for size in sizes:
        out.append(raw[at:at + size])
        at += size
    return out


def _keys_protocol(label: str) -> str:
    return f"secagg.keys/{label}"


def _survivor_payload(run_id: str, label: str, signer: str, survivors: Sequence[str], round_id: str | None,
                      basis: str | None, graph: str | None, m_min: int | None) -> bytes:
    """What a party signs in the consistency round: the survivor set U3 of this run and label, bound to the
    round the attempt belongs to, the digest of the public inputs (the global model) of the vectors, the
    neighbour graph and the minimum number of contributors m_min it enforces, so the coordinator cannot tell
    different parties different rounds, models, graphs or minimums for one attempt."""
    return signed_keys_payload(run_id, f"secagg.consistency/{label}", _ROLE, signer,
                               {"survivors": "\n".join(sorted(survivors)).encode(),
                                "round": (round_id or "").encode(), "basis": (basis or "").encode(),
                                "graph": (graph or "").encode(), "m_min": str(m_min or "").encode()})


def _graph_digest(graph: Mapping[str, Sequence[str]]) -> str:
    return hashlib.sha256(repr(sorted((str(p), sorted(str(q) for q in graph[p])) for p in graph)).encode()).hexdigest()


def _check_graph(graph: Mapping[str, Sequence[str]], me: str, holders: Sequence[str]) -> str | None:
    """Why the neighbour graph the coordinator sent is unusable (None if fine): it must be symmetric, regular
    (every party holds shares of exactly k others) and connected, with this party's neighbours its share
    holders. Regularity is what makes a majority threshold t > k/2 mean a majority of the survivors: the
    revealers of any unmasking then number more than |U3|/2, so two attempts cannot be unmasked by disjoint
    revealers. Connectivity: in a graph of several components each component's masks cancel inside it, so
    one unmasking would reveal every component's sum, and re-drawn components over the same U3 would
    isolate single inputs (two triangles of six parties, four times: review R7-1)."""
    if me not in graph or sorted(graph[me]) != sorted(holders):
        return "its neighbours in the graph are not its share holders"
    k = len(holders)
    for p, neighbours in graph.items():
        if len(set(neighbours)) != k or p in neighbours:
            return f"party {p!r} has {len(set(neighbours))} neighbours, not {k} (the graph is not regular)"
        if any(q not in graph or p not in graph[q] for q in neighbours):
            return f"the graph is not symmetric at party {p!r}"
    if not _spans(set(graph), graph):
        return "the graph is disconnected (each component's sum would be unmasked on its own)"
    return None


def _round_keys(run_id: str, round_id: str, basis: str | None) -> list[str]:
    """The RoundRecords an attempt is bound to: its round, and the model its vector was computed on."""
    return [f"{run_id}/round:{round_id}"] + ([f"{run_id}/basis:{basis}"] if basis else [])


@dataclass(frozen=True)
class _Bundle:
    """A party's advertised keys with its certificate and its signature over them."""

    c_pk: bytes
    s_pk: bytes
    b_commit: bytes
    certificate: bytes
    signature: bytes

    def keys(self) -> dict[str, bytes]:
        return {"c_pk": self.c_pk, "s_pk": self.s_pk, "b_commit": self.b_commit}

    def digest(self) -> bytes:
        return hashlib.sha256(b"|".join([self.c_pk, self.s_pk, self.b_commit, self.certificate,
                                         self.signature])).digest()


def _bundle_arrays(bundles: Sequence[_Bundle], prefix: str = "peer.") -> dict[str, np.ndarray]:
    cert, cert_len = _pack([b.certificate for b in bundles])
    sig, sig_len = _pack([b.signature for b in bundles])
    return {f"{prefix}c_pk": _stack([b.c_pk for b in bundles], KEY_BYTES),
            f"{prefix}s_pk": _stack([b.s_pk for b in bundles], KEY_BYTES),
            f"{prefix}b_commit": _stack([b.b_commit for b in bundles], 32),
            f"{prefix}certificate": cert, f"{prefix}certificate_len": cert_len,
            f"{prefix}signature": sig, f"{prefix}signature_len": sig_len}


def _bundles_from(arrays: Mapping[str, np.ndarray], names: Sequence[str], prefix: str = "peer.") -> dict[str, _Bundle]:
    n = len(names)
    try:
        c = _rows(arrays[f"{prefix}c_pk"], n, KEY_BYTES)
        s = _rows(arrays[f"{prefix}s_pk"], n, KEY_BYTES)
        b = _rows(arrays[f"{prefix}b_commit"], n, 32)
        cert = _unpack(arrays[f"{prefix}certificate"], arrays[f"{prefix}certificate_len"], n)
        sig = _unpack(arrays[f"{prefix}signature"], arrays[f"{prefix}signature_len"], n)
    except KeyError as exc:
        raise IdentityError(None, "unsigned", f"peer keys arrived without {exc.args[0]!r}") from None
    return {p: _Bundle(c[i], s[i], b[i], cert[i], sig[i]) for i, p in enumerate(names)}


def _graph_meta(value: Any) -> dict[str, list[str]] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping) or not all(isinstance(v, (list, tuple)) for v in value.values()):
        raise ValueError("the neighbour graph must map each party to a list of neighbours")
    return {str(p): [str(q) for q in v] for p, v in value.items()}


@dataclass
class _RoundSecrets:
    c_key: X25519PrivateKey
    s_secret: bytes
    b_seed: bytes

    @property
    def c_public(self) -> bytes:
        return _public(self.c_key)

    @property
    def s_public(self) -> bytes:
        return _public(X25519PrivateKey.from_private_bytes(self.s_secret))

    @property
    def b_commit(self) -> bytes:
        return hashlib.sha256(self.b_seed).digest()

    def digest(self) -> str:
        return hashlib.sha256(self.c_public + self.s_public + self.b_commit).hexdigest()


def _serialised(method: Callable[..., Any]) -> Callable[..., Any]:
    """One state-changing step at a time per party: a check and the record it then writes cannot interleave
    with another request's (two concurrent masked inputs under one label would both pass the check)."""
    @functools.wraps(method)
    def locked(self: "SecAggClient", *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            return method(self, *args, **kwargs)
    return locked


class SecAggClient:
    """A party's side of secure aggregation.

    Per-attempt secrets (the two X25519 keys and b) are derived (HKDF) from a master secret made when
    the party starts, the attempt's label and a nonce the party draws at its first advertisement under
    that label; the nonce, the keys' digest and everything the party revealed under the label are kept
    in `state` (`sampan.privacy.secagg_state`), written before any answer leaves. A restarted party with
    a new master cannot re-derive its keys: it refuses the attempt (a dropout) instead of corrupting the
    sum. Peers' keys are used only after their signatures verify against `verifier` (the consortium CA).
    `identity` and `verifier` are required: a deployment passes the organisation's certificate and CA, a
    simulation one identity per party from `simulated_consortium` (there is no process-wide default, which
    anyone in the process could use to mint a certificate in a victim's name).

    `respond(kind, arrays, meta, run_id=...)` answers one step's request (the message-level format the
    coordinator's `SecAggServer` produces); the masked-input step is `respond_masked`.
    """

    def __init__(self, name: str, master: bytes | None = None, *, identity: PartyIdentity,
                 verifier: IdentityVerifier, state: SecAggStateStore | None = None,
                 min_contributors: int = MIN_CONTRIBUTORS) -> None:
        if identity is None or verifier is None:
            raise ValueError(f"party {name!r}: secure aggregation needs this party's identity and the consortium "
                             "verifier (a simulation: `simulated_consortium`)")
        if identity.name != name:
            raise ValueError(f"party {name!r}: its identity certificate names {identity.name!r}")
        if min_contributors < MIN_CONTRIBUTORS:
            raise ValueError(f"party {name!r}: min_contributors must be at least {MIN_CONTRIBUTORS}")
        self.name = name
        self.identity, self.verifier = identity, verifier
        self.state: SecAggStateStore = state if state is not None else MemoryStateStore()
        self.min_contributors = min_contributors
        self._master = master if master is not None else os.urandom(32)
        self._answered: OrderedDict[str, np.ndarray] = OrderedDict()  # label -> masked input (idempotent replies)
        self._channels: OrderedDict[str, SealedChannels] = OrderedDict()  # label -> share channels (a cache)
        self._verified: OrderedDict[str, set[tuple[str, bytes]]] = OrderedDict()  # label -> (peer, bundle digest)
        self._lock = threading.RLock()

    # --- state and secrets -------------------------------------------------------------------------
    def _refuse(self, label: str, why: str) -> SecAggRefused:
        return SecAggRefused(f"party {self.name!r} refuses secure aggregation request under label {label!r}: {why}")

    def _secrets(self, label: str, nonce: str) -> _RoundSecrets:
        material = HKDF(algorithm=hashes.SHA256(), length=96, salt=None,
                        info=f"sampan/secagg/v2/{self.name}/{label}/{nonce}".encode()).derive(self._master)
        return _RoundSecrets(X25519PrivateKey.from_private_bytes(material[:32]), material[32:64], material[64:96])

    def _record(self, run_id: str, label: str, own: Mapping[str, np.ndarray]) -> tuple[LabelRecord, _RoundSecrets]:
        """This label's record and secrets; refuses a label it never advertised or whose keys it lost."""
        if not label.startswith(f"{run_id}/"):
            raise self._refuse(label, f"the label does not belong to run {run_id!r}")
        self._check_open(run_id, label)
        record = self.state.load(label)
        if record is None:
            raise self._refuse(label, "this party never advertised keys under it")
        s = self._secrets(label, record.nonce)
        if s.digest() != record.keys:
            raise ChannelError(f"party {self.name!r}: the keys of attempt {label!r} were made before a restart; "
                               "sitting this attempt out")
        if own and (_raw(own["c_pk"]) != s.c_public or _raw(own["s_pk"]) != s.s_public):
            raise self._refuse(label, "the coordinator echoed keys this party did not advertise")
        return record, s

    def _check_open(self, run_id: str, label: str) -> None:
        closed = self.state.load_round(closed_key(run_id))
        if closed is not None and closed.closed:
            raise self._refuse(label, f"run {run_id!r} is closed (its state was deleted; nothing more is answered "
                               "under it)")

    def close_run(self, run_id: str) -> int:
        """The run is over: delete its records (labels, rounds, cached vectors) and keep only a marker that
        refuses any later request of the run (a coordinator that 'closes' a run cannot reset the locks)."""
        with self._lock:
            gone = close_run(self.state, run_id)
            for cache in (self._answered, self._channels, self._verified):
                for key in [k for k in cache if k.startswith(f"{run_id}/")]:
                    del cache[key]
            return gone

    def _verify(self, run_id: str, label: str, bundles: Mapping[str, _Bundle]) -> None:
        """Every peer's keys must carry its valid signature for this run and label (IdentityError names it)."""
        seen = self._verified.setdefault(label, set())
        self._verified.move_to_end(label)
        while len(self._verified) > 8:
            self._verified.popitem(last=False)
        for peer in sorted(bundles):
            bundle = bundles[peer]
            if peer == self.name:
                raise self._refuse(label, "its own name is listed among its peers")
            if (peer, bundle.digest()) in seen:
                continue
            verify_keys(self.verifier, peer, run_id, _keys_protocol(label), _ROLE, bundle.keys(),
                        SignedKeys(bundle.certificate, bundle.signature))
            seen.add((peer, bundle.digest()))

    def _share_channels(self, label: str, s: _RoundSecrets, c_public: Mapping[str, bytes]) -> SealedChannels:
        key = hashlib.sha256(repr(sorted(c_public.items())).encode()).hexdigest()
        cached = self._channels.get(f"{label}|{key}")
        if cached is not None:
            return cached
        channels = SealedChannels(self.name, PartyKeys(s.c_key), dict(c_public), run_id=f"{label}|share")
        self._channels[f"{label}|{key}"] = channels
        while len(self._channels) > 8:
            self._channels.popitem(last=False)
        return channels

    # step 0
    @_serialised
    def advertise(self, run_id: str, label: str) -> dict[str, np.ndarray]:
        """Fresh keys for a new label (nonce drawn and recorded first); the same keys if asked again."""
        if not label.startswith(f"{run_id}/"):
            raise self._refuse(label, f"the label does not belong to run {run_id!r}")
        self._check_open(run_id, label)
        record = self.state.load(label)
        if record is None:
            nonce = os.urandom(16).hex()
            s = self._secrets(label, nonce)
            self.state.save(LabelRecord(label=label, nonce=nonce, keys=s.digest()))
        else:
            record, s = self._record(run_id, label, {})
        signed = sign_keys(self.identity, run_id, _keys_protocol(label), _ROLE,
                           {"c_pk": s.c_public, "s_pk": s.s_public, "b_commit": s.b_commit})
        return {"c_pk": _u8(s.c_public), "s_pk": _u8(s.s_public), "b_commit": _u8(s.b_commit),
                **signed.to_arrays()}

    # step 1
    @_serialised
    def share_keys(self, run_id: str, label: str, own: Mapping[str, np.ndarray], threshold: int,
                   holders: Sequence[str], xs: Sequence[int], bundles: Mapping[str, _Bundle],
                   min_live: int = 0, graph: Mapping[str, Sequence[str]] | None = None) -> list[bytes]:
        """Sealed (s-share, b-share) for each holder (its public Shamir index in `xs`), in holder order.

        `min_live` (m_min) is recorded now, before anyone drops: unmasking later needs that many survivors
        whatever the coordinator says then, so it cannot lower m_min once it knows who dropped."""
        record, s = self._record(run_id, label, own)
        if self.name in holders or len(set(holders)) != len(holders) or not len(holders) == len(xs) \
                or set(bundles) != set(holders):
            raise ValueError(f"party {self.name!r}: share holders, indices and keys do not match")
        if 2 * threshold <= len(holders) or threshold > len(holders):
            raise self._refuse(label, f"a threshold of {threshold} of {len(holders)} share holders is not a majority")
        if graph is None:
            raise self._refuse(label, "the request does not include the neighbour graph")
        problem = _check_graph(graph, self.name, holders)
        if problem:
            raise self._refuse(label, f"unusable neighbour graph: {problem}")
        digest = _graph_digest(graph)
        if record.holders is not None and (sorted(holders) != record.holders or threshold != record.threshold
                                           or digest != record.graph):
            raise self._refuse(label, "it already gave its shares to another set of holders")
        m_min = max(self.min_contributors, int(min_live))
        if record.m_min is not None and m_min != record.m_min:
            raise self._refuse(label, f"it already shared with m_min {record.m_min}, now asked with {m_min}")
        self._verify(run_id, label, bundles)
        record.holders, record.threshold, record.m_min, record.graph = sorted(holders), int(threshold), m_min, digest
        record.edges = {str(p): sorted(str(q) for q in graph[p]) for p in graph}
        self.state.save(record)
        s_shares = shamir.split(s.s_secret, threshold, xs)
        b_shares = shamir.split(s.b_seed, threshold, xs)
        channels = self._share_channels(label, s, {p: bundles[p].c_pk for p in holders})
        # the graph digest travels sealed with the shares: a holder reveals them only in the same graph
        return [channels.seal_arrays(p, {"s": _u8(shamir.share_to_bytes(s_shares[x])),
                                         "b": _u8(shamir.share_to_bytes(b_shares[x])),
                                         "graph": _u8(bytes.fromhex(digest))}).tobytes()
                for p, x in zip(holders, xs)]

    # step 2
    @_serialised
    def masked_input(self, run_id: str, label: str, own: Mapping[str, np.ndarray], vector: np.ndarray,
                     params: SecAggParams, bundles: Mapping[str, _Bundle], *, round_id: str | None = None,
                     basis: str | None = None, noise_parties: int | None = None,
                     content: bytes | None = None) -> np.ndarray:
        """y = encode(x) + PRG(b) + Σ sign·PRG(s_uv) over the neighbours that shared keys; once per label.

        `round_id` (the coordinator's name for the round, signed with U3) and `basis` (the caller's digest of
        the public inputs x is a function of, e.g. the global model) bind the attempt to its round: every
        attempt of a round masks the x of the first one (cached, persisted before it leaves), and after this
        party revealed unmask shares for one survivor set of the round, it reveals none for another.
        `noise_parties`: the number of noise shares x carries (distributed DP), so that many parties must
        sign the survivor set before this party helps unmask; it may not exceed the m_min it shared with.
        The encoded vector it masks (and `content`, the caller's bytes of what the vector holds before any
        public scaling, e.g. an update before its n/N weight) is also bound, through `vector:` locks named by
        an HMAC under the party's lock key, to the first U3 it is unmasked for, in any round, model or run:
        the same input under a new round name, model digest or run id is not unmasked for another U3."""
        if label in self._answered:  # asked twice (a transport retry): the same answer, never a second sample
            return self._answered[label]
        record, s = self._record(run_id, label, own)
        if not round_id:
            raise self._refuse(label, "the request names no round (needed to bind retries of one round)")
        if record.masked:
            raise self._refuse(label, "it already masked an input under these keys; a second one would reveal "
                               "the difference of the two")
        if record.holders is None or record.threshold is None:
            raise self._refuse(label, "it has not shared its keys under it")
        if not set(bundles) <= set(record.holders):
            raise self._refuse(label, "asked to mask against parties that hold none of its shares")
        if len(bundles) < record.threshold:
            raise self._refuse(label, f"only {len(bundles)} neighbours to mask against, {record.threshold} needed")
        if noise_parties is not None and not 1 <= int(noise_parties) <= (record.m_min or 0):
            raise self._refuse(label, f"its input carries noise shares for {noise_parties} parties, more than the "
                               f"{record.m_min} contributors the attempt is guaranteed (m_min): the sum would lack "
                               "noise")
        self._verify(run_id, label, bundles)
        keys = _round_keys(run_id, round_id, basis)
        rounds = [self.state.load_round(k) or RoundRecord(key=k) for k in keys]
        cached = {(r.vector, r.frac_bits, r.noise_parties) for r in rounds if r.vector is not None}
        if len(cached) > 1:
            raise self._refuse(label, f"round {round_id!r} and its model were contributed to with different inputs")
        # a retry of the round masks the same input, bit for bit, whatever the caller computed now — unless that
        # input's noise shares assumed more contributors than this attempt guarantees (a retry after dropouts
        # under distributed DP): then the caller's fresh input (noised for this attempt, and charged) is used;
        # the survivor-set lock below still allows one unmasked U3 per round
        cached = {c for c in cached if c[2] is None or (noise_parties is not None and c[2] <= noise_parties)}
        if cached:
            hexed, frac_bits, shares = cached.pop()
            y = np.frombuffer(bytes.fromhex(hexed), dtype=np.uint64).copy()
            if y.size != np.size(vector) or frac_bits != params.frac_bits:
                raise self._refuse(label, f"round {round_id!r} was contributed to with a vector of another shape")
        else:
            y, shares = encode_vector(vector, params), noise_parties
        for r in rounds:
            if r.vector is None:
                r.vector, r.frac_bits, r.noise_parties = y.tobytes().hex(), params.frac_bits, shares
                self.state.save_round(r)  # before the masked input leaves
        prune_vectors(self.state, run_id, keys)  # only this round keeps a cached vector (bounded per run)
        # cross-run locks of this very input (no run prefix, never deleted by close_run): the same vector (or the
        # same content under another public scaling) is unmasked for one U3 only, whatever it is called
        locks = [vector_key(self.state, f"encoded/{params.frac_bits}/{y.size}", y.tobytes())]
        if content is not None:
            locks.append(vector_key(self.state, "content", bytes(content)))
        if basis:  # and the public model itself, whatever else the request says (review R11): inputs computed from
            # one model under other settings (learning rate, bins, ...) can be known linear maps of each other
            locks.append(model_key(self.state, basis))
        for key in locks:
            if self.state.load_round(key) is None:
                self.state.save_round(RoundRecord(key=key))
        record.masked, record.round, record.basis, record.rounds = True, round_id, basis, keys + locks
        record.peers = sorted(bundles)
        record.noise_parties = max((x for x in (shares, noise_parties) if x is not None), default=None)
        self.state.save(record)  # before the masked input leaves
        y = y.copy()
        n = y.size
        y += prg_uint64(s.b_seed, f"{label}|self", n)
        channels = _mask_channels(self.name, s.s_secret, {p: b.s_pk for p, b in bundles.items()}, label)
        for peer in sorted(bundles):
            mask = channels.prg(peer, _MASK_LABEL, n)
            if _sign(self.name, peer) > 0:
                y += mask
            else:
                y -= mask
        self._answered[label] = y
        while len(self._answered) > 4:
            self._answered.popitem(last=False)
        return y

    # step 3
    @_serialised
    def sign_survivors(self, run_id: str, label: str, own: Mapping[str, np.ndarray], survivors: Sequence[str]) -> bytes:
        """Consistency round: sign the survivor set U3 — only one per label, and only one this party is in."""
        record, _ = self._record(run_id, label, own)
        u3 = sorted(set(survivors))
        if len(u3) != len(survivors):
            raise self._refuse(label, "the survivor set repeats a name")
        if self.name not in u3 or not record.masked:
            raise self._refuse(label, "it is named a survivor but sent no masked input")
        if len(u3) < self.min_contributors:
            raise self._refuse(label, f"{len(u3)} survivors, at least {self.min_contributors} needed")
        if record.signed is not None and record.signed != u3:
            raise self._refuse(label, "it already signed a different survivor set")
        self._check_survivors(label, record, u3)
        self._check_round_lock(label, record, u3)
        if record.signed is None:
            record.signed = u3
            self.state.save(record)
        return self.identity.sign(_survivor_payload(run_id, label, self.name, u3, record.round, record.basis,
                                                    record.graph, record.m_min))

    def _check_survivors(self, label: str, record: LabelRecord, u3: list[str]) -> None:
        """U3 must be connected inside the graph this party shared under, and it must have masked against every
        neighbour in U3: otherwise the masks cancel inside parts of U3 and unmasking reveals each part's sum."""
        if record.edges is None or record.peers is None:
            raise self._refuse(label, "it has no record of the neighbour graph and the peers it masked against")
        strangers = sorted(set(u3) - set(record.edges))
        if strangers:
            raise self._refuse(label, f"survivors {strangers[:5]}{'...' if len(strangers) > 5 else ''} are not in the "
                               "neighbour graph it shared under")
        if not _spans(set(u3), record.edges):
            raise self._refuse(label, "the survivor set is not connected in the neighbour graph (unmasking would "
                               "reveal the sums of its parts)")
        unmasked = sorted((set(record.edges.get(self.name, ())) & set(u3)) - set(record.peers))
        if unmasked:
            raise self._refuse(label, f"it did not mask against survivors {unmasked} (its neighbours): unmasking "
                               "would reveal the sums of parts of the survivor set")

    def _check_round_lock(self, label: str, record: LabelRecord, u3: list[str]) -> list[RoundRecord]:
        """The attempt's round and vector locks; refuses a U3 (or, for a round, a graph) other than the one it
        already revealed shares for."""
        rounds = []
        for key in record.rounds:
            r = self.state.load_round(key)
            if r is None:
                raise self._refuse(label, f"its record of {key!r} is missing")
            if r.survivors is not None and r.survivors != u3:
                if key.startswith(("model:", "vector:")):
                    what = "this very global model" if key.startswith("model:") else "this very input"
                    raise self._refuse(label, f"it unmasked {what} for another survivor set (use a new seed: a model "
                                       "is aggregated over one survivor set only, in any run, under any settings; "
                                       "the difference of two sums would reveal an input)")
                where = "on this model" if "/basis:" in key else f"in round {record.round!r}"
                raise self._refuse(label, f"it already revealed unmask shares {where} for another survivor set (the "
                                   "difference of the two sums would reveal an input)")
            if r.survivors is not None and r.graph is not None and r.graph != record.graph:
                raise self._refuse(label, f"it already revealed unmask shares in round {record.round!r} under another "
                                   "neighbour graph")
            rounds.append(r)
        return rounds

    # step 4
    @_serialised
    def unmask(self, run_id: str, label: str, own: Mapping[str, np.ndarray], senders: Sequence[str],
               envelopes: Sequence[bytes], bundles: Mapping[str, _Bundle], survivors: Sequence[str],
               signatures: Mapping[str, tuple[bytes, bytes]], min_live: int) -> tuple[list[bytes], list[bytes]]:
        """Per sender, in order: its b-share if it is in U3 (`survivors`), else its s-share (never both).

        `signatures` maps each signer to (certificate, signature over U3). Returns (b-shares of the
        senders in U3, s-shares of the others)."""
        record, s = self._record(run_id, label, own)
        u3 = sorted(set(survivors))
        if record.signed is None or record.signed != u3:
            raise self._refuse(label, "the survivor set differs from the one it signed in the consistency round")
        m_min = max(self.min_contributors, record.m_min or 0, int(min_live))  # the recorded m_min: never lowered
        if len(u3) < m_min:
            raise self._refuse(label, f"{len(u3)} survivors, at least {m_min} needed")
        if not set(signatures) <= set(u3) - {self.name}:
            raise self._refuse(label, f"signatures from {sorted(set(signatures) - (set(u3) - {self.name}))}: "
                               "not other survivors")
        if record.holders is None or record.threshold is None:
            raise self._refuse(label, "it has not shared its keys under it")
        self._check_survivors(label, record, u3)
        # Valid signatures over exactly this U3 from a majority (its own threshold t) of its own neighbours, and
        # from min_contributors parties with itself: honest parties sign one U3 per label, so two different
        # survivor sets cannot both win a majority of one neighbourhood (of everyone, on the complete graph),
        # as Bonawitz et al.'s t signatures. A bad signature aborts the request.
        holders = set(record.holders)
        # distributed DP: as many signers (certified parties, not just names in U3) as its noise assumes
        needed = max(self.min_contributors, record.noise_parties or 0)
        valid, valid_neighbours = 0, 0
        for signer in sorted(signatures, key=lambda p: (p not in holders, p)):
            if valid_neighbours >= record.threshold and valid + 1 >= needed:
                break
            certificate, signature = signatures[signer]
            self.verifier.verify(signer, certificate,
                                 _survivor_payload(run_id, label, signer, u3, record.round, record.basis,
                                                   record.graph, record.m_min), signature)
            valid, valid_neighbours = valid + 1, valid_neighbours + (signer in holders)
        if valid_neighbours < record.threshold:
            raise self._refuse(label, f"only {valid_neighbours} of its neighbours signed the survivor set, "
                               f"{record.threshold} needed")
        if valid + 1 < needed:
            why = "min_contributors" if needed == self.min_contributors else "its input's noise shares"
            raise self._refuse(label, f"only {valid + 1} parties (itself included) signed the survivor set, "
                               f"{needed} needed ({why})")
        if not len(senders) == len(envelopes) == len(set(senders)) or set(bundles) != set(senders):
            raise ValueError(f"party {self.name!r}: senders, envelopes and keys do not match")
        if record.holders is None or not set(senders) <= set(record.holders):
            raise self._refuse(label, "asked for shares of parties that are not its neighbours")
        self._verify(run_id, label, bundles)
        kinds = {peer: ("b" if peer in u3 else "s") for peer in senders}
        conflicts = sorted(p for p, k in kinds.items() if record.revealed.get(p, k) != k)
        if conflicts:
            raise self._refuse(label, f"it already revealed the other share of {conflicts} (revealing both would "
                               "unmask their input)")
        channels = self._share_channels(label, s, {p: bundles[p].c_pk for p in senders})
        opened = {peer: channels.open_arrays(peer, np.frombuffer(envelope, dtype=np.uint8))
                  for peer, envelope in zip(senders, envelopes)}
        # every share it reveals was dealt under its own (regular) graph: then the revealers of any unmasking
        # are more than half of U3, whatever graphs the coordinator handed to whom (see the module docstring)
        foreign = sorted(p for p, o in opened.items() if "graph" not in o or _raw(o["graph"]).hex() != record.graph)
        if foreign:
            raise self._refuse(label, f"the shares of {foreign} were dealt under another neighbour graph")
        for r in self._check_round_lock(label, record, u3):  # lock round and input to this U3 before a share leaves
            if r.survivors is None:
                r.survivors = u3
                r.graph = None if r.key.startswith(("vector:", "model:")) else record.graph  # a round: its graph too
                self.state.save_round(r)
        record.revealed.update(kinds)
        self.state.save(record)  # before any share leaves
        b_out = [_raw(opened[p]["b"], shamir.SHARE_BYTES) for p in senders if kinds[p] == "b"]
        s_out = [_raw(opened[p]["s"], shamir.SHARE_BYTES) for p in senders if kinds[p] == "s"]
        return b_out, s_out

    # --- message-level adapter (what the party's handlers call) -----------------------------------
    def respond(self, kind: str, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any], *,
                run_id: str) -> dict[str, np.ndarray]:
        """Answer a `secagg_keys`, `secagg_share`, `secagg_consistency` or `secagg_unmask` request of run `run_id`."""
        label = str(meta["label"])
        own = {"c_pk": arrays["own.c_pk"], "s_pk": arrays["own.s_pk"]} if "own.c_pk" in arrays else {}
        if kind == "secagg_keys":
            return self.advertise(run_id, label)
        if not own:
            raise self._refuse(label, "the request does not echo this party's keys")
        if kind == "secagg_share":
            holders = [str(p) for p in meta["holders"]]
            envelopes = self.share_keys(run_id, label, own, int(meta["threshold"]), holders,
                                        [int(x) for x in meta["index"]], _bundles_from(arrays, holders),
                                        int(meta.get("min_live") or 0), _graph_meta(meta.get("graph")))
            width = len(envelopes[0]) if envelopes else 0
            return {"envelopes": _stack(envelopes, width)}
        if kind == "secagg_consistency":
            return {"signature": _u8(self.sign_survivors(run_id, label, own, [str(p) for p in meta["survivors"]]))}
        if kind == "secagg_unmask":
            senders = [str(p) for p in meta["senders"]]
            signers, certified = [str(p) for p in meta["signers"]], [str(p) for p in meta.get("certified", [])]
            if len(set(signers)) != len(signers) or not set(certified) <= set(signers):
                raise self._refuse(label, "the signer lists repeat a name")
            signatures = _unpack(arrays["signers.signature"], arrays["signers.signature_len"], len(signers))
            extra = dict(zip(certified, _unpack(arrays["signers.certificate"], arrays["signers.certificate_len"],
                                                len(certified))))
            bundles = _bundles_from(arrays, senders)
            certificates = {p: bundles[p].certificate if p in bundles else extra.get(p) for p in signers}
            missing = sorted(p for p, c in certificates.items() if c is None)
            if missing:
                raise self._refuse(label, f"no certificate for signers {missing}")
            b, s = self.unmask(run_id, label, own, senders, _rows(arrays["envelopes"], len(senders)), bundles,
                               [str(p) for p in meta["survivors"]],
                               {p: (certificates[p], g) for p, g in zip(signers, signatures)}, int(meta["min_live"]))
            return {"b": _stack(b, shamir.SHARE_BYTES), "s": _stack(s, shamir.SHARE_BYTES)}
        raise ValueError(f"not a secure aggregation step: {kind!r}")

    def respond_masked(self, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any], vector: np.ndarray, *,
                       run_id: str, basis: str | None = None, noise_parties: int | None = None,
                       content: bytes | None = None) -> np.ndarray:
        """The masked-input step: `meta` is the request's secure-aggregation part, `vector` this party's input,
        `basis` the caller's digest of what `vector` is computed from, `noise_parties` the number of noise
        shares it carries, `content` the bytes of what it holds before public scaling (see `masked_input`)."""
        own = {"c_pk": arrays["own.c_pk"], "s_pk": arrays["own.s_pk"]}
        peers = [str(p) for p in meta["peers"]]
        params = SecAggParams(frac_bits=int(meta["frac_bits"]), max_abs=float(meta["max_abs"]))
        round_id = meta.get("round")
        return self.masked_input(run_id, str(meta["label"]), own, vector, params, _bundles_from(arrays, peers),
                                 round_id=str(round_id) if round_id else None, basis=basis,
                                 noise_parties=noise_parties, content=content)


@dataclass
class _Stage:
    keys: dict[str, _Bundle] = field(default_factory=dict)  # party -> its signed keys
    holders: dict[str, list[str]] = field(default_factory=dict)  # party -> who holds its shares (request order)
    envelopes: dict[str, dict[str, bytes]] = field(default_factory=dict)  # sender -> recipient -> envelope
    masked: dict[str, np.ndarray] = field(default_factory=dict)
    signatures: dict[str, bytes] = field(default_factory=dict)  # party -> its signature over U3
    senders: dict[str, tuple[list[str], list[str]]] = field(default_factory=dict)  # holder -> (b-of, s-of) asked
    shares: dict[str, dict[str, bytes]] = field(default_factory=dict)  # holder -> "b.v"/"s.v" -> share


Requests = dict[str, tuple[dict[str, np.ndarray], dict[str, Any]]]


class SecAggServer:
    """The coordinator's side of one attempt: which requests to send, and the unmasked sum.

    Knows nothing about transports: the workflow asks for each step's requests, delivers them, and
    hands back each reply (a party that failed is simply not reported). One instance sums one vector;
    a second vector in the same round (e.g. evaluation histograms) is a second instance with its own
    label.
    """

    def __init__(self, params: SecAggParams, parties: Sequence[str], length: int, label: str,
                 rng: np.random.Generator, *, round_id: str | None = None) -> None:
        if len(parties) < params.min_contributors:
            raise SecAggAbort("setup", f"{len(parties)} parties selected; secure aggregation never sums fewer than "
                              f"{params.min_contributors} contributors (min_contributors)", parties)
        params.check_capacity(len(parties))
        self.params, self.length, self.label = params, int(length), label
        # the round this attempt belongs to (every retry of a round names the same one; parties bind it)
        self.round_id = round_id or label
        self.parties = sorted(parties)
        self.index = {p: i + 1 for i, p in enumerate(self.parties)}
        self._rng = rng
        self.graph: dict[str, set[str]] = {}
        self.thresholds: dict[str, int] = {}
        self.st = _Stage()
        self.u1: list[str] = []
        self.u2: list[str] = []
        self.u3: list[str] = []
        self.signed: list[str] = []
        self.u4: list[str] = []
        self.reached = "setup"  # the last step whose requests were made
        self.dropouts: dict[str, str] = {}  # party -> the step (and error) at which it dropped

    # --- helpers -----------------------------------------------------------------------------------
    def _own(self, party: str) -> dict[str, np.ndarray]:
        bundle = self.st.keys[party]
        return {"own.c_pk": _u8(bundle.c_pk), "own.s_pk": _u8(bundle.s_pk)}

    def _peers(self, names: Sequence[str]) -> dict[str, np.ndarray]:
        return _bundle_arrays([self.st.keys[q] for q in names])

    @property
    def min_live(self) -> int:
        """Masked inputs needed for the round to complete; DP noise shares are sized by it."""
        return self.params.min_live(len(self.u1))

    def _require(self, stage: str, live: Sequence[str], needed: int) -> None:
        if len(live) < needed:
            why = "min_contributors" if needed == self.params.min_contributors else "threshold"
            raise SecAggAbort(stage, f"{len(live)} parties left, {needed} needed ({why})", live)

    def _check_recoverable(self, stage: str, answering: set[str], live: Sequence[str]) -> None:
        """Fail before anyone reveals a share if some secret cannot be rebuilt from the parties still answering."""
        for v in self.u2:
            holders = self.graph[v] & answering
            if len(holders) < self.thresholds[v]:
                raise SecAggAbort(stage, f"party {v!r} has {len(holders)} live share holders, "
                                  f"{self.thresholds[v]} needed", live)

    # --- step 0: advertise -------------------------------------------------------------------------
    def advertise_requests(self) -> Requests:
        self.reached = "advertise"
        return {p: ({}, {"label": self.label}) for p in self.parties}

    def receive_keys(self, party: str, arrays: Mapping[str, np.ndarray]) -> None:
        signed = SignedKeys.from_arrays(arrays, party)
        self.st.keys[party] = _Bundle(_raw(arrays["c_pk"], KEY_BYTES), _raw(arrays["s_pk"], KEY_BYTES),
                                      _raw(arrays["b_commit"], 32), signed.certificate_pem, signed.signature)

    # --- step 1: share keys ------------------------------------------------------------------------
    def share_requests(self) -> Requests:
        self.reached = "share keys"
        self.u1 = sorted(self.st.keys)
        self._require("advertise", self.u1, self.params.min_live(len(self.parties)))
        self.graph = harary_graph(self.u1, self.params.neighbours, self._rng)
        graph = {p: sorted(q) for p, q in self.graph.items()}  # public: every party checks it and signs its digest
        requests = {}
        for p in self.u1:
            holders = sorted(self.graph[p])
            t = self.params.share_threshold(len(holders))
            self.thresholds[p], self.st.holders[p] = t, holders
            requests[p] = ({**self._own(p), **self._peers(holders)},
                           {"label": self.label, "threshold": t, "holders": holders,
                            "index": [self.index[q] for q in holders], "min_live": self.min_live, "graph": graph})
        return requests

    def receive_shares(self, party: str, arrays: Mapping[str, np.ndarray]) -> None:
        holders = self.st.holders[party]
        envelopes = _rows(arrays["envelopes"], len(holders))
        self.st.envelopes[party] = dict(zip(holders, envelopes))

    # --- step 2: masked input ----------------------------------------------------------------------
    def masked_requests(self) -> Requests:
        self.reached = "masked input"
        self.u2 = sorted(self.st.envelopes)
        self._require("share keys", self.u2, self.min_live)
        live = set(self.u2)
        requests = {}
        for p in self.u2:
            peers = sorted(self.graph[p] & live)
            requests[p] = ({**self._own(p), **self._peers(peers)},
                           {"label": self.label, "round": self.round_id, "peers": peers,
                            "noise_parties": self.min_live,
                            "frac_bits": self.params.frac_bits, "max_abs": self.params.max_abs})
        return requests

    def receive_masked(self, party: str, masked: np.ndarray) -> None:
        masked = np.asarray(masked)
        if masked.dtype != np.uint64 or masked.shape != (self.length,):
            raise ValueError(f"party {party!r} sent a masked input of {masked.dtype} {masked.shape}, "
                             f"expected uint64 ({self.length},)")
        self.st.masked[party] = masked

    # --- step 3: consistency -----------------------------------------------------------------------
    def consistency_requests(self) -> Requests:
        self.reached = "consistency"
        self.u3 = sorted(self.st.masked)
        self._require("masked input", self.u3, self.min_live)
        if not _connected(set(self.u3), self.graph):
            raise SecAggAbort("masked input", "the survivors' neighbour graph is disconnected; unmasking would "
                              "reveal partial sums", self.u3)
        self._check_recoverable("masked input", set(self.u3), self.u3)
        return {u: (self._own(u), {"label": self.label, "survivors": self.u3}) for u in self.u3}

    def receive_signature(self, party: str, arrays: Mapping[str, np.ndarray]) -> None:
        signature = _raw(arrays["signature"])
        if not 0 < len(signature) <= 512:
            raise ValueError(f"party {party!r} sent a malformed signature")
        self.st.signatures[party] = signature

    # --- step 4: unmasking -------------------------------------------------------------------------
    def unmask_requests(self) -> Requests:
        self.reached = "unmasking"
        self.signed = sorted(self.st.signatures)
        self._require("consistency", self.signed, self.min_live)
        self._check_recoverable("consistency", set(self.signed), self.signed)
        survivors, dropped = set(self.u3), set(self.u2) - set(self.u3)
        requests = {}
        for u in self.signed:
            senders = sorted(self.graph[u] & set(self.u2))
            self.st.senders[u] = ([v for v in senders if v in survivors], [v for v in senders if v in dropped])
            # its neighbours' signatures (their certificates travel in the senders' keys), and others' with
            # certificates only if it needs them to reach min_contributors signers (m_min under distributed DP:
            # a party whose input carries a 1/m_min noise share wants m_min signers)
            vouching = [v for v in self.signed if v in self.graph[u]]
            more = max(0, max(self.params.min_contributors, self.min_live) - 1 - len(vouching))
            certified = [v for v in self.signed if v != u and v not in self.graph[u]][:more]
            sig, sig_len = _pack([self.st.signatures[v] for v in vouching + certified])
            cert, cert_len = _pack([self.st.keys[v].certificate for v in certified])
            requests[u] = ({**self._own(u), **self._peers(senders),
                            "signers.signature": sig, "signers.signature_len": sig_len,
                            "signers.certificate": cert, "signers.certificate_len": cert_len,
                            "envelopes": _stack([self.st.envelopes[v][u] for v in senders],
                                                len(self.st.envelopes[senders[0]][u]) if senders else 0)},
                           {"label": self.label, "senders": senders, "survivors": self.u3,
                            "signers": vouching + certified, "certified": certified, "min_live": self.min_live})
        return requests

    def receive_unmask(self, party: str, arrays: Mapping[str, np.ndarray]) -> None:
        b_of, s_of = self.st.senders[party]
        b = _rows(arrays["b"], len(b_of), shamir.SHARE_BYTES)
        s = _rows(arrays["s"], len(s_of), shamir.SHARE_BYTES)
        self.st.shares[party] = {**{f"b.{v}": x for v, x in zip(b_of, b)}, **{f"s.{v}": x for v, x in zip(s_of, s)}}

    def _rebuild(self, which: str, v: str) -> bytes:
        collected = {self.index[h]: shamir.share_from_bytes(self.st.shares[h][f"{which}.{v}"])
                     for h in self.u4 if f"{which}.{v}" in self.st.shares[h]}
        t = self.thresholds[v]
        if len(collected) < t:
            raise SecAggAbort("unmasking", f"{len(collected)} shares of party {v!r}'s {which}, {t} needed", self.u4)
        secret = shamir.combine(collected, t)
        bundle = self.st.keys[v]
        expected = bundle.b_commit if which == "b" else bundle.s_pk
        actual = hashlib.sha256(secret).digest() if which == "b" else \
            _public(X25519PrivateKey.from_private_bytes(secret))
        if actual != expected:
            raise SecAggAbort("unmasking", f"party {v!r}'s rebuilt {which} does not match its commitment", self.u4)
        return secret

    def result(self) -> np.ndarray:
        """The sum (in Z_2^64) of the masked inputs of every party in `u3`, with all masks removed."""
        self.reached = "result"
        self.u4 = sorted(self.st.shares)
        self._require("unmasking", self.u4, 1)
        total = np.zeros(self.length, dtype=np.uint64)
        for v in self.u3:
            total += self.st.masked[v]
        for v in self.u3:
            total -= prg_uint64(self._rebuild("b", v), f"{self.label}|self", self.length)
        survivors = set(self.u3)
        for v in sorted(set(self.u2) - survivors):
            neighbours = sorted(self.graph[v] & survivors)
            channels = _mask_channels(v, self._rebuild("s", v), {u: self.st.keys[u].s_pk for u in neighbours},
                                      self.label)
            for u in neighbours:
                mask = channels.prg(u, _MASK_LABEL, self.length)
                if _sign(u, v) > 0:  # u added +mask; take it out again
                    total -= mask
                else:
                    total += mask
        return total

    def summary(self) -> dict[str, object]:
        """Public facts of this attempt for the audit log: who took part at each step, the graph, the minimum.

        A party is listed as dropped at a step only if that step was run (an attempt that aborted before
        unmasking lists nobody as dropped after masking).
        """
        degree = None if not self.graph else min(len(n) for n in self.graph.values())
        unmasked = self.reached == "result"
        return {"label": self.label, "selected": len(self.parties), "advertised": len(self.u1),
                "shared": len(self.u2), "masked": len(self.u3), "signed": len(self.signed),
                "unmasked": len(self.u4) if unmasked else None, "reached": self.reached,
                "dropped_before_masking": sorted(set(self.u2) - set(self.u3))
                if self.reached in ("consistency", "unmasking", "result") else [],
                "dropped_after_masking": sorted(set(self.u3) - set(self.u4)) if unmasked else [],
                "failed": dict(sorted(self.dropouts.items())),
                "neighbours": degree, "complete_graph": self.params.neighbours is None or
                (degree is not None and degree >= len(self.u1) - 1),
                "min_contributors": self.params.min_contributors,
                "min_live": self.min_live if self.u1 else None}


Call = Callable[[str, str, Mapping[str, np.ndarray], Mapping[str, Any]], "Mapping[str, np.ndarray] | None"]


def run_secagg(server: SecAggServer, call: Call, masked_kind: str = "fit") -> np.ndarray:
    """Drive one attempt: `call(kind, party, arrays, meta)` delivers a request and returns the reply's
    arrays, or None if the party failed (dropped). Malformed replies count as dropouts too.
    `masked_kind` is the message kind that carries the masked-input request (the workflow's own step).

    Returns the unmasked sum in Z_2^64; raises SecAggAbort below the threshold or min_contributors.
    """
    steps = ((server.advertise_requests, "secagg_keys", server.receive_keys),
             (server.share_requests, "secagg_share", server.receive_shares),
             (server.masked_requests, masked_kind, lambda p, a: server.receive_masked(p, a["masked"])),
             (server.consistency_requests, "secagg_consistency", server.receive_signature),
             (server.unmask_requests, "secagg_unmask", server.receive_unmask))
    for make, kind, receive in steps:
        for party, (arrays, meta) in make().items():
            reply = call(kind, party, arrays, meta)
            if reply is None:
                server.dropouts.setdefault(party, kind)
                continue
            try:
                receive(party, reply)
            except (KeyError, ValueError) as exc:
                server.dropouts.setdefault(party, f"{kind}: {exc}")
    return server.result()
