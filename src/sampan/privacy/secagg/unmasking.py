"""Steps 3 and 4 of a SecAgg+ party: sign one survivor set, then reveal one kind of share per neighbour.

Why apart: these two steps carry the locks that stop a coordinator from differencing sums (same round,
same model, same input, other survivor set); they read and write the records `ClientBase` keeps.

What each role learns: see the package docstring (`sampan.privacy.secagg`); in short, the coordinator learns
one sum per round over one connected survivor set of at least m_min contributors (noised under DP3) and
who answered each step; a party learns its neighbours' signed public keys and fewer than t Shamir shares of
each neighbour's secrets.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from sampan.crypto import shamir
from sampan.privacy.secagg.client_base import ClientBase, _serialised
from sampan.privacy.secagg.codec import _Bundle, _raw, _survivor_payload
from sampan.privacy.secagg.graph import _spans
from sampan.privacy.secagg.state import LabelRecord, RoundRecord


class UnmaskingSteps(ClientBase):
    """The consistency round and unmasking of `SecAggClient`."""

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
                  for peer, envelope in zip(senders, envelopes, strict=False)}
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
