"""The coordinator's side of one SecAgg+ attempt: the requests of each step, and the unmasked sum.

Why apart: it runs at the coordinator and holds no party secret; it learns secrets only by rebuilding
them from the shares parties chose to reveal (one kind per party), and checks each against its commitment.

What each role learns: see the package docstring (`sampan.privacy.secagg`); in short, the coordinator learns
one sum per round over one connected survivor set of at least m_min contributors (noised under DP3) and
who answered each step; a party learns its neighbours' signed public keys and fewer than t Shamir shares of
each neighbour's secrets.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from sampan.crypto import shamir
from sampan.crypto.channel import prg_uint64
from sampan.crypto.identity import SignedKeys
from sampan.privacy.secagg.codec import (
    _MASK_LABEL,
    _Bundle,
    _bundle_arrays,
    _mask_channels,
    _pack,
    _public,
    _raw,
    _rows,
    _sign,
    _stack,
    _u8,
)
from sampan.privacy.secagg.graph import _connected, harary_graph
from sampan.privacy.secagg.params import KEY_BYTES, SecAggAbort, SecAggParams


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
        self.st.envelopes[party] = dict(zip(holders, envelopes, strict=False))

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
        self.st.shares[party] = {**{f"b.{v}": x for v, x in zip(b_of, b, strict=False)},
                                 **{f"s.{v}": x for v, x in zip(s_of, s, strict=False)}}

    def _rebuild(self, which: str, v: str) -> bytes:
        collected = {
            self.index[h]: shamir.share_from_bytes(self.st.shares[h][f"{which}.{v}"])
            for h in self.u4
            if f"{which}.{v}" in self.st.shares[h]
        }
        t = self.thresholds[v]
        if len(collected) < t:
            raise SecAggAbort("unmasking", f"{len(collected)} shares of party {v!r}'s {which}, {t} needed", self.u4)
        secret = shamir.combine(collected, t)
        bundle = self.st.keys[v]
        expected = bundle.b_commit if which == "b" else bundle.s_pk
        actual = (
            hashlib.sha256(secret).digest() if which == "b" else _public(X25519PrivateKey.from_private_bytes(secret))
        )
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
            channels = _mask_channels(
                v, self._rebuild("s", v), {u: self.st.keys[u].s_pk for u in neighbours}, self.label
            )
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
        return {
            "label": self.label,
            "selected": len(self.parties),
            "advertised": len(self.u1),
            "shared": len(self.u2),
            "masked": len(self.u3),
            "signed": len(self.signed),
            "unmasked": len(self.u4) if unmasked else None,
            "reached": self.reached,
            "dropped_before_masking": sorted(set(self.u2) - set(self.u3))
            if self.reached in ("consistency", "unmasking", "result")
            else [],
            "dropped_after_masking": sorted(set(self.u3) - set(self.u4)) if unmasked else [],
            "failed": dict(sorted(self.dropouts.items())),
            "neighbours": degree,
            "complete_graph": self.params.neighbours is None or (degree is not None and degree >= len(self.u1) - 1),
            "min_contributors": self.params.min_contributors,
            "min_live": self.min_live if self.u1 else None,
        }


Call = Callable[[str, str, Mapping[str, np.ndarray], Mapping[str, Any]], "Mapping[str, np.ndarray] | None"]


def run_secagg(server: SecAggServer, call: Call, masked_kind: str = "fit") -> np.ndarray:
    """Drive one attempt: `call(kind, party, arrays, meta)` delivers a request and returns the reply's
    arrays, or None if the party failed (dropped). Malformed replies count as dropouts too.
    `masked_kind` is the message kind that carries the masked-input request (the workflow's own step).

    Returns the unmasked sum in Z_2^64; raises SecAggAbort below the threshold or min_contributors.
    """
    steps = (
        (server.advertise_requests, "secagg_keys", server.receive_keys),
        (server.share_requests, "secagg_share", server.receive_shares),
        (server.masked_requests, masked_kind, lambda p, a: server.receive_masked(p, a["masked"])),
        (server.consistency_requests, "secagg_consistency", server.receive_signature),
        (server.unmask_requests, "secagg_unmask", server.receive_unmask),
    )
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
