"""A SecAgg+ party's steps 0-2 (advertise, share keys, masked input) and its message-level adapter.

Why apart from the coordinator: a party runs this in its own process; it trusts no request and records
what it did under each label before any answer leaves (`sampan.privacy.secagg.state`).

What each role learns: see the package docstring (`sampan.privacy.secagg`); in short, the coordinator learns
one sum per round over one connected survivor set of at least m_min contributors (noised under DP3) and
who answered each step; a party learns its neighbours' signed public keys and fewer than t Shamir shares of
each neighbour's secrets.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from sampan.crypto import shamir
from sampan.crypto.channel import prg_uint64
from sampan.crypto.identity import sign_keys
from sampan.privacy.secagg.client_base import _serialised
from sampan.privacy.secagg.codec import (
    _MASK_LABEL,
    _ROLE,
    _Bundle,
    _bundles_from,
    _keys_protocol,
    _mask_channels,
    _round_keys,
    _rows,
    _sign,
    _stack,
    _u8,
    _unpack,
)
from sampan.privacy.secagg.graph import _check_graph, _graph_digest, _graph_meta
from sampan.privacy.secagg.params import SecAggParams, encode_vector
from sampan.privacy.secagg.state import LabelRecord, RoundRecord, model_key, prune_vectors, vector_key
from sampan.privacy.secagg.unmasking import UnmaskingSteps


class SecAggClient(UnmaskingSteps):
    """A party's side of secure aggregation.

    Per-attempt secrets (the two X25519 keys and b) are derived (HKDF) from a master secret made when
    the party starts, the attempt's label and a nonce the party draws at its first advertisement under
    that label; the nonce, the keys' digest and everything the party revealed under the label are kept
    in `state` (`sampan.privacy.secagg.state`), written before any answer leaves. A restarted party with
    a new master cannot re-derive its keys: it refuses the attempt (a dropout) instead of corrupting the
    sum. Peers' keys are used only after their signatures verify against `verifier` (the consortium CA).
    `identity` and `verifier` are required: a deployment passes the organisation's certificate and CA, a
    simulation one identity per party from `simulated_consortium` (there is no process-wide default, which
    anyone in the process could use to mint a certificate in a victim's name).

    `respond(kind, arrays, meta, run_id=...)` answers one step's request (the message-level format the
    coordinator's `SecAggServer` produces); the masked-input step is `respond_masked`.
    """

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
                for p, x in zip(holders, xs, strict=False)]

    # step 2
    @_serialised
    def masked_input(self, run_id: str, label: str, own: Mapping[str, np.ndarray], vector: np.ndarray,
                     params: SecAggParams, bundles: Mapping[str, _Bundle], *, round_id: str | None = None,
                     basis: str | Sequence[str] | None = None, noise_parties: int | None = None,
                     content: bytes | Sequence[bytes] | None = None,
                     segments: Sequence[tuple[int, float]] | None = None) -> np.ndarray:
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
        the same input under a new round name, model digest or run id is not unmasked for another U3.
        A vector that carries several inputs (a fit and the evaluation of the model it starts from) passes one
        `basis` and one `content` per input: each is locked, so no part is unmasked for a second U3 on its own,
        and may pass `segments` ((size, max_abs) covering the vector): each part is clamped at its own bound
        (an evaluation's counts are not clamped at a fit's max_abs: review R12-SAC-5)."""
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
        bases = [basis] if isinstance(basis, str) else [str(b) for b in basis or []]
        contents = [content] if isinstance(content, bytes) else [bytes(c) for c in content or []]
        keys = _round_keys(run_id, round_id, None) + [k for b in bases for k in _round_keys(run_id, round_id, b)[1:]]
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
            y, shares = _encoded(vector, params, segments), noise_parties
        for r in rounds:
            if r.vector is None:
                r.vector, r.frac_bits, r.noise_parties = y.tobytes().hex(), params.frac_bits, shares
                self.state.save_round(r)  # before the masked input leaves
        prune_vectors(self.state, run_id, keys)  # only this round keeps a cached vector (bounded per run)
        # cross-run locks of this very input (no run prefix, never deleted by close_run): the same vector (or the
        # same content under another public scaling) is unmasked for one U3 only, whatever it is called
        locks = [vector_key(self.state, f"encoded/{params.frac_bits}/{y.size}", y.tobytes())]
        locks += [vector_key(self.state, "content", c) for c in contents]
        # and the public model itself, whatever else the request says (review R11): inputs computed from one
        # model under other settings (learning rate, bins, ...) can be known linear maps of each other
        locks += [model_key(self.state, b) for b in bases if b]
        for key in locks:
            if self.state.load_round(key) is None:
                self.state.save_round(RoundRecord(key=key))
        record.masked, record.round, record.rounds = True, round_id, keys + locks
        record.basis = "+".join(b for b in bases if b) or None  # signed with U3
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
                                                len(certified)), strict=False))
            bundles = _bundles_from(arrays, senders)
            certificates = {p: bundles[p].certificate if p in bundles else extra.get(p) for p in signers}
            missing = sorted(p for p, c in certificates.items() if c is None)
            if missing:
                raise self._refuse(label, f"no certificate for signers {missing}")
            b, s = self.unmask(run_id, label, own, senders, _rows(arrays["envelopes"], len(senders)), bundles,
                               [str(p) for p in meta["survivors"]],
                               {p: (certificates[p], g) for p, g in zip(signers, signatures, strict=False)},
                               int(meta["min_live"]))
            return {"b": _stack(b, shamir.SHARE_BYTES), "s": _stack(s, shamir.SHARE_BYTES)}
        raise ValueError(f"not a secure aggregation step: {kind!r}")

    def respond_masked(
        self,
        arrays: Mapping[str, np.ndarray],
        meta: Mapping[str, Any],
        vector: np.ndarray,
        *,
        run_id: str,
        basis: str | Sequence[str] | None = None,
        noise_parties: int | None = None,
        content: bytes | Sequence[bytes] | None = None,
        segments: Sequence[tuple[int, float]] | None = None,
    ) -> np.ndarray:
        """The masked-input step: `meta` is the request's secure-aggregation part, `vector` this party's input,
        `basis` the caller's digest of what `vector` is computed from, `noise_parties` the number of noise
        shares it carries, `content` the bytes of what it holds before public scaling (see `masked_input`)."""
        own = {"c_pk": arrays["own.c_pk"], "s_pk": arrays["own.s_pk"]}
        peers = [str(p) for p in meta["peers"]]
        params = SecAggParams(frac_bits=int(meta["frac_bits"]), max_abs=float(meta["max_abs"]))
        round_id = meta.get("round")
        return self.masked_input(
            run_id,
            str(meta["label"]),
            own,
            vector,
            params,
            _bundles_from(arrays, peers),
            round_id=str(round_id) if round_id else None,
            basis=basis,
            noise_parties=noise_parties,
            content=content,
            segments=segments,
        )


def _encoded(vector: np.ndarray, params: SecAggParams, segments: Sequence[tuple[int, float]] | None) -> np.ndarray:
    """`encode_vector`, each segment (size, max_abs) clamped at its own bound (one frac_bits: one decoding)."""
    if not segments:
        return encode_vector(vector, params)
    x = np.asarray(vector, dtype=np.float64)
    if sum(int(n) for n, _ in segments) != x.size:
        raise ValueError(f"secure aggregation segments {list(segments)} do not cover a vector of {x.size}")
    parts, start = [], 0
    for size, bound in segments:
        parts.append(
            encode_vector(x[start : start + int(size)], SecAggParams(frac_bits=params.frac_bits, max_abs=float(bound)))
        )
        start += int(size)
    return np.concatenate(parts)
