"""Secure aggregation that survives dropouts (SecAgg+: Bell et al. 2020, after Bonawitz et al. 2017).

The coordinator learns the sum of the surviving parties' vectors and nothing else about any one of
them. Every party u turns its float vector x_u into fixed-point ring elements of Z_2^64 and sends

    y_u = x_u + PRG(b_u) + sum_{v in N(u)} sign(u, v) * PRG(s_uv)      (mod 2^64)

where N(u) are its neighbours in a public k-regular graph (a Harary graph on a random ring order;
the complete graph when the consortium is small), s_uv is an X25519 agreement between u's and v's mask
keys (so u and v draw identical masks; sign(u, v) = +1 if u < v, else -1, so they cancel in a sum), and
b_u is a private self-mask seed. One round of secure aggregation has four steps, each one message
per party through the coordinator:

0. advertise — two X25519 public keys per party: c (to encrypt shares) and s (pairwise masks), and
   a SHA-256 commitment to b_u;
1. share keys — each party Shamir-shares (t of its k neighbours) its mask private key s_u and its seed
   b_u, and seals each neighbour's pair of shares under a ChaCha20-Poly1305 key agreed with that
   neighbour's c key (`sampan.vertical.channel.SealedChannels`); the coordinator only relays ciphertext;
2. masked input — each party sends y_u, masking against the neighbours that completed step 1;
3. unmasking — each survivor opens the envelopes it was sent and reveals, per neighbour v, the share
   of b_v if v sent its masked input, or the share of s_v if v dropped before masking. Never both.

The coordinator then removes every survivor's self-mask (b_v rebuilt from t shares) and, for every
party that dropped before masking, the pairwise masks its neighbours added (s_v rebuilt, s_uv
recomputed). A party that dropped *after* masking is in the sum: its b is rebuilt from its
neighbours' shares. If too few parties are left at any step (below the threshold), or a rebuilt
key does not match what its owner advertised, the round aborts with `SecAggAbort` naming the
survivors, and the workflow retries it with them under fresh keys (keys, seeds and shares never
outlive one attempt).

Fixed point: values are clamped to ±max_abs and encoded as round(x·2^f) in Z_2^64. With m parties the
true sum stays below m·max_abs·2^f, which `SecAggParams.check_capacity` keeps under 2^63, so the
modular sum decodes to the exact sum of the encoded values (error ≤ m·2^-(f+1) per coordinate).

Threat model:
- Semi-honest (honest-but-curious) coordinator and parties; the coordinator does not collude with a
  data party. The coordinator sees keys, ciphertext, masked vectors (uniform in Z_2^64 to it), the
  set of who responded at each step, and the final sum — never an individual input. For each party
  it obtains at most one of its two secrets (b if it sent its input, s if it dropped before), which
  leaves its input hidden by the other. Each party sees its neighbours' public keys and one share
  of each neighbour's secrets: less than the t needed.
- Up to t - 1 colluding neighbours of a party learn nothing about its secrets; t of them plus the
  coordinator could unmask it. With the default threshold (0.6 of each neighbourhood) t is a
  majority, so even a coordinator that lied about dropouts could not collect t b-shares from one
  group of honest neighbours and t s-shares from another.
- A *malicious* coordinator could: lie about who dropped to different parties (this design has no
  signed consistency round, Bonawitz et al.'s step 4, so parties trust the survivor lists they are
  given); substitute public keys (man in the middle; deployments bind keys to the mTLS identities);
  choose a graph whose survivors split into components (the honest coordinator checks connectivity
  before unmasking and aborts otherwise, since a component's partial sum would be revealed); or
  simply drop parties to shrink the sum to a few inputs (bounded below by the threshold). Malicious
  parties can send any vector within the clamp: secure aggregation hides inputs, it does not
  validate them (robust aggregation needs the individual updates and is incompatible with it).
- Dropouts are assumed independent of the data; the set of survivors is public.

DP3 composition: each party adds its share of the Gaussian noise before masking
(`sampan.privacy.dp3.party_release`), with variance σ²/m_min where m_min is the least number of
masked inputs for which the round can complete. Any completed round therefore carries noise of
variance at least σ²; when nobody drops, σ²·m/m_min (the price of tolerating dropouts). The
coordinator only ever sees the noised sum. The noise is a floating-point Gaussian rounded to the
2^-f grid (rounding is post-processing); a discrete Gaussian on the grid would also close the
floating-point side channels of continuous samplers (Mironov 2012) and is not done here.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from sampan.privacy import shamir
from sampan.vertical.channel import ChannelError, PartyKeys, SealedChannels, prg_uint64

__all__ = [
    "SecAggAbort", "SecAggParams", "SecAggClient", "SecAggServer", "harary_graph", "choose_neighbours",
    "encode_vector", "decode_vector", "KEY_BYTES", "STEP_KINDS", "run_secagg",
]

KEY_BYTES = 32
_MASK_LABEL = "secagg-pairwise-mask"
STEP_KINDS = ("secagg_keys", "secagg_share", "fit", "secagg_unmask")  # message kinds of the four steps


class SecAggAbort(RuntimeError):
    """Too few parties at some step (or an inconsistent reconstruction): the round must be retried.

    `survivors` are the parties that answered the step at which the round stopped — the natural set
    to retry with; `stage` names the step.
    """

    def __init__(self, stage: str, reason: str, survivors: Iterable[str]) -> None:
        super().__init__(f"secure aggregation aborted at {stage}: {reason}")
        self.stage, self.reason, self.survivors = stage, reason, sorted(survivors)


@dataclass(frozen=True)
class SecAggParams:
    """Public parameters of one secure aggregation (the same for every party).

    threshold: share of a party's share holders needed to rebuild its secrets (t = ceil(threshold·k));
      on a full graph, k = n - 1. It is also the least share of the parties that advertised keys whose
      masked input must arrive (m_min = max(2, ceil(threshold·n))).
    neighbours: k, the degree of the neighbour graph (even), or None for the complete graph.
    """

    threshold: float = 0.6
    neighbours: int | None = None
    frac_bits: int = 32
    max_abs: float = 1e4

    def __post_init__(self) -> None:
        if not 0.5 < self.threshold <= 1:
            raise ValueError(f"secure aggregation threshold must be in (0.5, 1], got {self.threshold}")
        if self.neighbours is not None and (self.neighbours < 2 or self.neighbours % 2):
            raise ValueError(f"neighbours must be an even number >= 2, got {self.neighbours}")
        if not 1 <= self.frac_bits <= 52 or self.max_abs <= 0:
            raise ValueError("frac_bits must be in [1, 52] and max_abs > 0")

    def check_capacity(self, parties: int) -> None:
        """The sum of `parties` clamped, encoded values must stay inside the signed ring."""
        bound = parties * self.max_abs * 2.0**self.frac_bits
        if bound >= 2.0**63:
            raise ValueError(
                f"secure aggregation of {parties} parties with max_abs {self.max_abs} and frac_bits {self.frac_bits} "
                f"could overflow Z_2^64 ({bound:.3g} >= 2^63): lower max_abs or frac_bits")

    def min_live(self, advertised: int) -> int:
        return max(2, math.ceil(self.threshold * advertised - 1e-9))

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


class SecAggClient:
    """A party's side of secure aggregation.

    Per-attempt secrets (the two X25519 keys and b) are derived from a master secret made when the
    party starts (HKDF bound to the attempt's label), so the party needs no state between the four
    steps and any worker process holding the master can answer (a small cache only saves work). A
    party restarted mid-round has a new master: the coordinator echoes each party's advertised keys
    and a mismatch makes the party refuse (it counts as a dropout for that attempt) instead of
    corrupting the sum.

    `respond(kind, arrays, meta)` answers one step's request (the message-level format the
    coordinator's `SecAggServer` produces); the masked-input step is `respond_masked`.
    """

    def __init__(self, name: str, master: bytes | None = None) -> None:
        self.name = name
        self._master = master if master is not None else os.urandom(32)
        self._answered: OrderedDict[str, np.ndarray] = OrderedDict()  # label -> masked input (idempotent replies)
        self._channels: OrderedDict[str, SealedChannels] = OrderedDict()  # label -> share channels (a cache)

    def _secrets(self, label: str) -> _RoundSecrets:
        material = HKDF(algorithm=hashes.SHA256(), length=96, salt=None,
                        info=f"sampan/secagg/v1/{self.name}/{label}".encode()).derive(self._master)
        return _RoundSecrets(X25519PrivateKey.from_private_bytes(material[:32]), material[32:64], material[64:96])

    def _check_own(self, label: str, secrets_: _RoundSecrets, own: Mapping[str, np.ndarray]) -> None:
        if _raw(own["c_pk"]) != secrets_.c_public or _raw(own["s_pk"]) != secrets_.s_public:
            raise ChannelError(f"party {self.name!r}: the keys of attempt {label!r} were made before a restart; "
                               "sitting this attempt out")

    def _share_channels(self, label: str, s: _RoundSecrets, c_public: Mapping[str, bytes]) -> SealedChannels:
        cached = self._channels.get(label)
        if cached is not None and set(c_public) <= set(cached.peers):
            return cached
        channels = SealedChannels(self.name, PartyKeys(s.c_key), dict(c_public), run_id=f"{label}|share")
        self._channels[label] = channels
        while len(self._channels) > 4:
            self._channels.popitem(last=False)
        return channels

    # step 0
    def advertise(self, label: str) -> dict[str, np.ndarray]:
        s = self._secrets(label)
        return {"c_pk": _u8(s.c_public), "s_pk": _u8(s.s_public),
                "b_commit": _u8(hashlib.sha256(s.b_seed).digest())}

    # step 1
    def share_keys(self, label: str, own: Mapping[str, np.ndarray], threshold: int, holders: Sequence[str],
                   xs: Sequence[int], c_public: Sequence[bytes]) -> list[bytes]:
        """Sealed (s-share, b-share) for each holder (its public Shamir index in `xs`), in holder order."""
        s = self._secrets(label)
        self._check_own(label, s, own)
        if self.name in holders or len(set(holders)) != len(holders) or not len(holders) == len(xs) == len(c_public):
            raise ValueError(f"party {self.name!r}: share holders, indices and keys do not match")
        s_shares = shamir.split(s.s_secret, threshold, xs)
        b_shares = shamir.split(s.b_seed, threshold, xs)
        channels = self._share_channels(label, s, dict(zip(holders, c_public)))
        return [channels.seal_arrays(p, {"s": _u8(shamir.share_to_bytes(s_shares[x])),
                                         "b": _u8(shamir.share_to_bytes(b_shares[x]))}).tobytes()
                for p, x in zip(holders, xs)]

    # step 2
    def masked_input(self, label: str, own: Mapping[str, np.ndarray], vector: np.ndarray, params: SecAggParams,
                     s_public: Mapping[str, bytes]) -> np.ndarray:
        """y = encode(x) + PRG(b) + Σ sign·PRG(s_uv) over the neighbours that shared keys."""
        if label in self._answered:  # asked twice (a transport retry): the same answer, never a second sample
            return self._answered[label]
        s = self._secrets(label)
        self._check_own(label, s, own)
        y = encode_vector(vector, params)
        n = y.size
        y += prg_uint64(s.b_seed, f"{label}|self", n)
        peers = {p: k for p, k in s_public.items() if p != self.name}
        channels = _mask_channels(self.name, s.s_secret, peers, label)
        for peer in sorted(peers):
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
    def unmask(self, label: str, own: Mapping[str, np.ndarray], senders: Sequence[str], envelopes: Sequence[bytes],
               c_public: Sequence[bytes], survivors: Iterable[str], dropped: Iterable[str],
               min_live: int, live_total: int) -> tuple[list[bytes], list[bytes]]:
        """Per sender, in order: its b-share if it sent a masked input, else its s-share (never both).

        Returns (b-shares of the survivors among `senders`, s-shares of the dropped ones)."""
        survivors, dropped = set(survivors), set(dropped)
        if survivors & dropped:
            raise ValueError(f"party {self.name!r}: a neighbour cannot both survive and drop")
        if live_total < min_live:
            raise ValueError(f"party {self.name!r}: only {live_total} masked inputs, fewer than {min_live}")
        if not len(senders) == len(envelopes) == len(c_public) or not set(senders) <= survivors | dropped:
            raise ValueError(f"party {self.name!r}: senders, envelopes and keys do not match")
        s = self._secrets(label)
        self._check_own(label, s, own)
        channels = self._share_channels(label, s, dict(zip(senders, c_public)))
        b_out, s_out = [], []
        for peer, envelope in zip(senders, envelopes):
            shares = channels.open_arrays(peer, np.frombuffer(envelope, dtype=np.uint8))
            if peer in survivors:
                b_out.append(_raw(shares["b"], shamir.SHARE_BYTES))
            else:
                s_out.append(_raw(shares["s"], shamir.SHARE_BYTES))
        return b_out, s_out

    # --- message-level adapter (what the party's handlers call) -----------------------------------
    def respond(self, kind: str, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Answer a `secagg_keys`, `secagg_share` or `secagg_unmask` request; returns the reply's arrays."""
        label = str(meta["label"])
        own = {"c_pk": arrays["own.c_pk"], "s_pk": arrays["own.s_pk"]} if "own.c_pk" in arrays else {}
        if kind == "secagg_keys":
            return self.advertise(label)
        if kind == "secagg_share":
            holders = [str(p) for p in meta["holders"]]
            envelopes = self.share_keys(label, own, int(meta["threshold"]), holders, [int(x) for x in meta["index"]],
                                        _rows(arrays["c_pk"], len(holders), KEY_BYTES))
            width = len(envelopes[0]) if envelopes else 0
            return {"envelopes": _stack(envelopes, width)}
        if kind == "secagg_unmask":
            senders = [str(p) for p in meta["senders"]]
            b, s = self.unmask(label, own, senders, _rows(arrays["envelopes"], len(senders)),
                               _rows(arrays["c_pk"], len(senders), KEY_BYTES), meta["survivors"], meta["dropped"],
                               int(meta["min_live"]), int(meta["live_total"]))
            return {"b": _stack(b, shamir.SHARE_BYTES), "s": _stack(s, shamir.SHARE_BYTES)}
        raise ValueError(f"not a secure aggregation step: {kind!r}")

    def respond_masked(self, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any],
                       vector: np.ndarray) -> np.ndarray:
        """The masked-input step: `meta` is the request's secure-aggregation part, `vector` this party's input."""
        own = {"c_pk": arrays["own.c_pk"], "s_pk": arrays["own.s_pk"]}
        peers = [str(p) for p in meta["peers"]]
        params = SecAggParams(frac_bits=int(meta["frac_bits"]), max_abs=float(meta["max_abs"]))
        return self.masked_input(str(meta["label"]), own, vector, params,
                                 dict(zip(peers, _rows(arrays["s_pk"], len(peers), KEY_BYTES))))


@dataclass
class _Stage:
    keys: dict[str, tuple[bytes, bytes, bytes]] = field(default_factory=dict)  # party -> (c_pk, s_pk, b_commit)
    holders: dict[str, list[str]] = field(default_factory=dict)  # party -> who holds its shares (request order)
    envelopes: dict[str, dict[str, bytes]] = field(default_factory=dict)  # sender -> recipient -> envelope
    masked: dict[str, np.ndarray] = field(default_factory=dict)
    senders: dict[str, tuple[list[str], list[str]]] = field(default_factory=dict)  # holder -> (b-of, s-of) asked
    shares: dict[str, dict[str, bytes]] = field(default_factory=dict)  # holder -> "b.v"/"s.v" -> share


Requests = dict[str, tuple[dict[str, np.ndarray], dict[str, Any]]]


class SecAggServer:
    """The coordinator's side of one attempt: which requests to send, and the unmasked sum.

    Knows nothing about transports: the workflow asks for each step's requests, delivers them, and
    hands back each reply (a party that failed is simply not reported).
    """

    def __init__(self, params: SecAggParams, parties: Sequence[str], length: int, label: str,
                 rng: np.random.Generator) -> None:
        if len(parties) < 2:
            raise SecAggAbort("setup", "secure aggregation needs at least two parties", parties)
        params.check_capacity(len(parties))
        self.params, self.length, self.label = params, int(length), label
        self.parties = sorted(parties)
        self.index = {p: i + 1 for i, p in enumerate(self.parties)}
        self._rng = rng
        self.graph: dict[str, set[str]] = {}
        self.thresholds: dict[str, int] = {}
        self.st = _Stage()
        self.u1: list[str] = []
        self.u2: list[str] = []
        self.u3: list[str] = []
        self.u4: list[str] = []
        self.dropouts: dict[str, str] = {}  # party -> the step (and error) at which it dropped

    # --- helpers -----------------------------------------------------------------------------------
    def _own(self, party: str) -> dict[str, np.ndarray]:
        c_pk, s_pk, _ = self.st.keys[party]
        return {"own.c_pk": _u8(c_pk), "own.s_pk": _u8(s_pk)}

    @property
    def min_live(self) -> int:
        """Masked inputs needed for the round to complete; DP noise shares are sized by it."""
        return self.params.min_live(len(self.u1))

    def _require(self, stage: str, live: Sequence[str], needed: int) -> None:
        if len(live) < needed:
            raise SecAggAbort(stage, f"{len(live)} parties left, {needed} needed (threshold)", live)

    def _key_rows(self, names: Sequence[str], which: int) -> np.ndarray:
        return _stack([self.st.keys[q][which] for q in names], KEY_BYTES)

    # --- step 0: advertise -------------------------------------------------------------------------
    def advertise_requests(self) -> Requests:
        return {p: ({}, {"label": self.label}) for p in self.parties}

    def receive_keys(self, party: str, arrays: Mapping[str, np.ndarray]) -> None:
        self.st.keys[party] = (_raw(arrays["c_pk"], KEY_BYTES), _raw(arrays["s_pk"], KEY_BYTES),
                               _raw(arrays["b_commit"], 32))

    # --- step 1: share keys ------------------------------------------------------------------------
    def share_requests(self) -> Requests:
        self.u1 = sorted(self.st.keys)
        self._require("advertise", self.u1, self.params.min_live(len(self.parties)))
        self.graph = harary_graph(self.u1, self.params.neighbours, self._rng)
        requests = {}
        for p in self.u1:
            holders = sorted(self.graph[p])
            t = self.params.share_threshold(len(holders))
            self.thresholds[p], self.st.holders[p] = t, holders
            requests[p] = ({**self._own(p), "c_pk": self._key_rows(holders, 0)},
                           {"label": self.label, "threshold": t, "holders": holders,
                            "index": [self.index[q] for q in holders]})
        return requests

    def receive_shares(self, party: str, arrays: Mapping[str, np.ndarray]) -> None:
        holders = self.st.holders[party]
        envelopes = _rows(arrays["envelopes"], len(holders))
        self.st.envelopes[party] = dict(zip(holders, envelopes))

    # --- step 2: masked input ----------------------------------------------------------------------
    def masked_requests(self) -> Requests:
        self.u2 = sorted(self.st.envelopes)
        self._require("share keys", self.u2, self.min_live)
        live = set(self.u2)
        requests = {}
        for p in self.u2:
            peers = sorted(self.graph[p] & live)
            requests[p] = ({**self._own(p), "s_pk": self._key_rows(peers, 1)},
                           {"label": self.label, "peers": peers, "noise_parties": self.min_live,
                            "frac_bits": self.params.frac_bits, "max_abs": self.params.max_abs})
        return requests

    def receive_masked(self, party: str, masked: np.ndarray) -> None:
        masked = np.asarray(masked)
        if masked.dtype != np.uint64 or masked.shape != (self.length,):
            raise ValueError(f"party {party!r} sent a masked input of {masked.dtype} {masked.shape}, "
                             f"expected uint64 ({self.length},)")
        self.st.masked[party] = masked

    # --- step 3: unmasking -------------------------------------------------------------------------
    def unmask_requests(self) -> Requests:
        self.u3 = sorted(self.st.masked)
        self._require("masked input", self.u3, self.min_live)
        survivors, dropped = set(self.u3), set(self.u2) - set(self.u3)
        if not _connected(survivors, self.graph):
            raise SecAggAbort("masked input", "the survivors' neighbour graph is disconnected; unmasking would "
                              "reveal partial sums", self.u3)
        for v in self.u2:  # fail early, before anyone reveals a share, if some secret cannot be rebuilt
            holders = self.graph[v] & survivors
            if len(holders) < self.thresholds[v]:
                raise SecAggAbort("masked input", f"party {v!r} has {len(holders)} live share holders, "
                                  f"{self.thresholds[v]} needed", self.u3)
        requests = {}
        for u in self.u3:
            senders = sorted(self.graph[u] & set(self.u2))
            self.st.senders[u] = ([v for v in senders if v in survivors], [v for v in senders if v in dropped])
            requests[u] = ({**self._own(u), "c_pk": self._key_rows(senders, 0),
                            "envelopes": _stack([self.st.envelopes[v][u] for v in senders],
                                                len(self.st.envelopes[senders[0]][u]) if senders else 0)},
                           {"label": self.label, "senders": senders,
                            "survivors": sorted(self.graph[u] & survivors), "dropped": sorted(self.graph[u] & dropped),
                            "min_live": self.min_live, "live_total": len(self.u3)})
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
        c_pk, s_pk, b_commit = self.st.keys[v]
        expected = b_commit if which == "b" else s_pk
        actual = hashlib.sha256(secret).digest() if which == "b" else \
            _public(X25519PrivateKey.from_private_bytes(secret))
        if actual != expected:
            raise SecAggAbort("unmasking", f"party {v!r}'s rebuilt {which} does not match its commitment", self.u4)
        return secret

    def result(self) -> np.ndarray:
        """The sum (in Z_2^64) of the masked inputs of every party in `u3`, with all masks removed."""
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
            channels = _mask_channels(v, self._rebuild("s", v), {u: self.st.keys[u][1] for u in neighbours},
                                      self.label)
            for u in neighbours:
                mask = channels.prg(u, _MASK_LABEL, self.length)
                if _sign(u, v) > 0:  # u added +mask; take it out again
                    total -= mask
                else:
                    total += mask
        return total

    def summary(self) -> dict[str, object]:
        """Public facts of this attempt for the audit log (who took part at each step, the graph degree)."""
        degree = None if not self.graph else min(len(n) for n in self.graph.values())
        return {"label": self.label, "selected": len(self.parties), "advertised": len(self.u1),
                "shared": len(self.u2), "masked": len(self.u3), "unmasked": len(self.u4),
                "dropped_before_masking": sorted(set(self.u2) - set(self.u3)),
                "dropped_after_masking": sorted(set(self.u3) - set(self.u4)),
                "failed": dict(sorted(self.dropouts.items())),
                "neighbours": degree, "complete_graph": self.params.neighbours is None or
                (degree is not None and degree >= len(self.u1) - 1),
                "min_live": self.min_live if self.u1 else None}


Call = Callable[[str, str, Mapping[str, np.ndarray], Mapping[str, Any]], "Mapping[str, np.ndarray] | None"]


def run_secagg(server: SecAggServer, call: Call) -> np.ndarray:
    """Drive one attempt: `call(kind, party, arrays, meta)` delivers a request and returns the reply's
    arrays, or None if the party failed (dropped). Malformed replies count as dropouts too.

    Returns the unmasked sum in Z_2^64; raises SecAggAbort below the threshold.
    """
    steps = ((server.advertise_requests, "secagg_keys", server.receive_keys),
             (server.share_requests, "secagg_share", server.receive_shares),
             (server.masked_requests, "fit", lambda p, a: server.receive_masked(p, a["masked"])),
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
