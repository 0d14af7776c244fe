"""Review R9 (A4): the replay key of a partner's GBDT histogram answers was the coordinator's clear label.

`vgb.serve` keyed its "a replayed request label is refused" rule on `meta["label"]`, which the
coordinator writes: re-sending the bank's sealed request under label + "'" was answered again (with
fresh noise, charged). Now the bank puts its request counter inside the sealed body; the partner keys
the refusal (and the dealer pad) on it and refuses a clear label that differs from it. Fails on commit 1064fb2 (the
relabelled replay was answered there).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator
from typing import Any

import pytest

from sampan.data import make_sme_consortium
from sampan.models.gbdt import GBDTParams
from sampan.runtime.federation import build_inprocess_vertical
from sampan.transport.inprocess import InProcessTransport
from sampan.vertical.gbdt import train_vertical_gbdt
from sampan.vertical.session import Splits, VerticalSession
from sampan.wire import Message


class _Replaying(InProcessTransport):
    """A coordinator that sends each sealed vgb.serve request twice: relabelled, or exactly again."""

    def __init__(self, apps: Any, relabel: bool) -> None:
        super().__init__(apps)
        self.relabel, self.answered, self.refused = relabel, 0, []  # type: ignore[var-annotated]

    def exchange(self, messages: Iterable[Message]) -> Iterator[Message]:
        for m in messages:
            yield from super().exchange([m])
            if m.kind == "vgb.serve" and not self.refused:
                again = (
                    dataclasses.replace(m, meta={**m.meta, "label": str(m.meta["label"]) + "'"}) if self.relabel else m
                )
                try:
                    self.answered += len(list(super().exchange([again])))
                except Exception as exc:
                    self.refused.append(str(exc))


@pytest.mark.parametrize("relabel", [True, False])
def test_a_sealed_histogram_request_is_answered_once_whatever_the_clear_label(relabel: bool) -> None:
    tables = {k: v for k, v in make_sme_consortium(1200, seed=9).vertical.items() if k in ("bank", "payments")}
    _, parties = build_inprocess_vertical(tables)
    t = _Replaying({n: p.app for n, p in parties.items()}, relabel)
    s = VerticalSession(t, label_holder="bank", partners=["payments"], run_id=f"r9-a4-{relabel}")
    s.connect()
    s.align()
    sp = Splits.random(s.n_aligned or 0, seed=1)
    train_vertical_gbdt(
        t,
        s.run_id,
        "bank",
        ["payments"],
        sp.train,
        sp.val,
        GBDTParams(n_trees=1, max_depth=2, n_bins=8),
        hist_noise=3.0,
    )
    assert t.answered == 0
    assert t.refused and ("sealed label" in t.refused[0] if relabel else "already answered" in t.refused[0]), t.refused
