"""The coordinator's view of each bank in a federated fit: a measurer that asks over the transport.

`RemoteMeasurer` has the interface the fitter's plan uses (`sampan.synth.fit`), but holds no records:
each release method charges the run's ledger write-ahead (persisted through the run recorder before
anything is asked) and returns a `ReleaseRequest`; the sum strategy (`sampan.synth.aggregate`) then
asks every party of that stage in one exchange. Tree selection is asked of every party in one exchange
at the first party's call; bin definitions ride on each party's next ``synth.*`` request.

What each role learns: the coordinator, what the sum strategy lets it see (each bank's noisy release
with ``PlainSum``; only sums with ``SecureSum``), each bank's EM-chosen tree, and each bank's own
description of its releases (noise, charge: public plan facts). A bank: the public schema, grids,
bins, baselines and coarsening maps, all post-processing of earlier noisy sums.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from sampan.core.transport import Transport
from sampan.privacy.ledger import Ledger, PrivacyEvent
from sampan.synth import protocol
from sampan.synth.aggregate import ReleaseRequest
from sampan.synth.budget import em_event, gaussian_event
from sampan.synth.discretize import FineGrid
from sampan.synth.encoders import Encoder
from sampan.synth.measure import Axis, clique_note, label_note, one_way_note
from sampan.synth.schema import SynthSchema
from sampan.wire import Message

__all__ = ["RemoteMeasurer", "SynthesisChannel"]

Charge = Callable[[PrivacyEvent], None]


class SynthesisChannel:
    """One fit's exchanges with its parties: numbered steps, one exchange per stage, bins delivered lazily."""

    def __init__(self, transport: Transport, run_id: str, parties: Sequence[str], coordinator: str = "coordinator",
                 first_step: int = 0) -> None:
        self.transport, self.run_id, self.parties, self.coordinator = transport, run_id, list(parties), coordinator
        self.step = first_step
        self._deliver: dict[str, tuple[dict[str, Any], dict[str, np.ndarray]]] = {}
        self._trees: dict[str, list[tuple[str, str]]] = {}

    def exchange(self, kind: str, requests: Mapping[str, tuple[Mapping[str, np.ndarray], Mapping[str, Any]]],
                 ) -> dict[str, Message]:
        """Ask every named party in one exchange; a party's error reply raises `PartyError` naming it."""
        messages = []
        for party, (arrays, meta) in requests.items():
            extra_meta, extra_arrays = self._deliver.pop(party, ({}, {})) if kind.startswith("synth.") else ({}, {})
            messages.append(Message(self.run_id, self.step, self.coordinator, party, kind,
                                    {**extra_arrays, **arrays}, {**extra_meta, **meta}))
        replies = {reply.sender: reply for reply in self.transport.exchange(messages)}
        self.step += 1
        missing = sorted(set(requests) - set(replies))
        if missing:
            raise ConnectionError(f"synthesis step {self.step - 1} ({kind}): no reply from part(y/ies) {missing}")
        return replies

    def deliver_encoders(self, party: str, encoders: Mapping[str, Encoder]) -> None:
        meta, arrays = protocol.encode_encoders(encoders)
        self._deliver[party] = ({"encoders": meta}, arrays)

    def tree(self, measurer: RemoteMeasurer, features: Sequence[str], baselines: Mapping[tuple[str, str], np.ndarray],
             epsilon_per_round: float, measurers: Sequence[RemoteMeasurer]) -> list[tuple[str, str]]:
        """The party's EM-chosen tree; the first party's call asks all of them (each charged first)."""
        if measurer.party not in self._trees:
            for m in measurers:
                m.charge_selection(len(features) - 1, epsilon_per_round)
            keys, arrays = protocol.encode_baselines(baselines)
            meta = {"features": list(features), "baselines": keys, "epsilon": epsilon_per_round}
            replies = self.exchange(protocol.SELECT_TREE, {m.party: (arrays, meta) for m in measurers})
            for m in measurers:
                reply = replies[m.party]
                self._trees[m.party] = [(str(a), str(b)) for a, b in reply.meta["edges"]]
                m.releases.extend(dict(r) for r in reply.meta.get("releases", []))
        return self._trees.pop(measurer.party)


class RemoteMeasurer:
    """One bank as the fitter sees it: the run's ledger is charged here, the records stay at the bank."""

    def __init__(self, party: str, channel: SynthesisChannel, schema: SynthSchema, ledger: Ledger,
                 persist: Callable[[Mapping[str, Any]], None], siblings: list[RemoteMeasurer]) -> None:
        self.party, self.channel, self._schema, self._ledger, self._persist = party, channel, schema, ledger, persist
        self._siblings = siblings  # every measurer of this fit, in party order (tree selection asks them all)
        self._step = 0
        label = schema.column(schema.label) if schema.label is not None else None
        self._sizes: dict[str, int] = {"": label.size if label is not None else 1}
        self.releases: list[dict[str, object]] = []  # each party's own record of its releases, for the receipt

    def _charge(self, event: PrivacyEvent) -> None:
        """Write-ahead: recorded in the run's ledger and persisted before the request leaves."""
        self._ledger.record(event)
        self._persist({"party": self.party, "step": self._step, "note": event.note})
        self._step += 1

    def _request(self, op: str, sigma: float, note: str, shape: tuple[int, ...], meta: Mapping[str, Any],
                 arrays: Mapping[str, np.ndarray]) -> ReleaseRequest:
        self._charge(gaussian_event(self.party, sigma, 1.0, self._step, note))
        return ReleaseRequest(self.party, {"op": op, "sigma": sigma, **meta}, dict(arrays), shape, self)

    def label_counts(self, sigma: float) -> ReleaseRequest:
        return self._request("label", sigma, label_note(self._schema), (self._sizes[""],), {}, {})

    def one_way(self, column: str, sigma: float, grid: FineGrid | None = None) -> ReleaseRequest:
        spec = self._schema.column(column)
        meta: dict[str, Any] = {"column": column}
        arrays: dict[str, np.ndarray] = {}
        if spec.kind == "categorical":
            cells = spec.size
        else:
            if grid is None:
                raise ValueError(f"column '{column}' is numeric: a public fine grid is needed")
            meta["grid"], arrays = protocol.encode_grid(grid)
            cells = grid.n_cells
        return self._request("one_way", sigma, one_way_note(self._schema, column, grid), (cells,), meta, arrays)

    def set_encoders(self, encoders: Mapping[str, Encoder]) -> None:
        label = self._schema.label
        for name, encoder in encoders.items():
            if name != label:
                self._sizes[name] = encoder.n_bins
        self.channel.deliver_encoders(self.party, {n: e for n, e in encoders.items() if n != label})

    def select_tree(self, features: Sequence[str], baselines: Mapping[tuple[str, str], np.ndarray],
                    epsilon_per_round: float) -> list[tuple[str, str]]:
        return self.channel.tree(self, features, baselines, epsilon_per_round, self._siblings)

    def charge_selection(self, rounds: int, epsilon_per_round: float) -> None:
        for r in range(rounds):
            self._charge(em_event(self.party, epsilon_per_round, self._step, f"select tree edge {r + 1}/{rounds}"))

    def clique(self, axes: Sequence[Axis], sigma: float) -> ReleaseRequest:
        shape = tuple(int(c.max()) + 1 if c is not None else self._sizes[name] for name, c in axes)
        names, arrays = protocol.encode_axes(axes)
        note = clique_note(self._schema, names, int(np.prod(shape)))
        return self._request("clique", sigma, note, shape, {"axes": names}, arrays)
