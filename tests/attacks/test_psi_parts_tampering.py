"""Attack on PSI's payload parts: a coordinator that drops, repeats, reorders or swaps the sealed parts it relays.

Claim (`sampan.vertical.psi_parts`): order and completeness of a payload's parts are checked inside the seal
(each part names its step, index, count and row totals), so tampering with the relay makes the step fail with
a PsiError naming parties, never an id, and never yields a wrong or mixed alignment.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import pytest

from sampan.core.transport import PartyError
from sampan.vertical.psi import run_psi
from sampan.wire import Message
from tests.test_psi import federation, random_sets

Tamper = Callable[[list[Message]], list[Message]]


class TamperingRelay:
    """Holds back the `psi.part` requests of one step and rewrites their sequence before delivering them."""

    def __init__(self, inner: object, tamper: Tamper, step: str) -> None:
        self.inner, self.tamper, self.step = inner, tamper, step
        self.held: list[Message] = []
        self.coordinator = "coordinator"

    def exchange(self, messages: Iterable[Message]) -> Iterator[Message]:
        out: list[Message] = []
        for m in messages:
            if m.kind == "psi.part" and m.recipient == self.step:
                self.held.append(m)
                out.append(m.reply("psi.part"))  # pretend it was delivered
            elif m.kind == "psi.pull" or not self.held or m.recipient != self.step:
                out.extend(self.inner.exchange([m]))  # type: ignore[attr-defined]
            else:  # the step's last part: deliver the tampered sequence, then it
                for held in self.tamper(self.held):
                    list(self.inner.exchange([held]))  # type: ignore[attr-defined]
                self.held = []
                out.extend(self.inner.exchange([m]))  # type: ignore[attr-defined]
        return iter(out)


def _swap(parts: list[Message]) -> list[Message]:
    return [parts[1], parts[0], *parts[2:]]


def _drop(parts: list[Message]) -> list[Message]:
    return parts[:1] + parts[2:]


def _repeat(parts: list[Message]) -> list[Message]:
    return [parts[0], *parts]


def _last_only(parts: list[Message]) -> list[Message]:
    return []


@pytest.mark.parametrize("tamper", [_swap, _drop, _repeat, _last_only])
@pytest.mark.parametrize("receiver", ["bank", "payments"])
def test_tampered_parts_abort_the_step(tamper: Tamper, receiver: str) -> None:
    a, b = random_sets(4, 50, 40, 15)
    parties, transport = federation({"bank": a, "payments": b})
    for p in parties.values():
        p.part_rows = 8
    with pytest.raises(PartyError) as info:
        run_psi(TamperingRelay(transport, tamper, receiver), "run-1", "bank", "payments", "both")
    assert info.value.error_type in ("PsiError", "ChannelError")
    assert "part" in info.value.error or "payload" in info.value.error
    for s in a + b:
        assert s not in info.value.error
    assert "payments" not in parties["bank"].rows and "bank" not in parties["payments"].rows


def test_parts_are_pulled_once_and_in_order() -> None:
    a, b = random_sets(6, 40, 40, 10)
    parties, transport = federation({"bank": a, "payments": b})
    for p in parties.values():
        p.part_rows = 8
    offer = next(transport.exchange([Message("r", 0, "coordinator", "bank", "psi.offer",
                                             meta={"mode": "both", "peer": "payments"})]))
    accept = next(transport.exchange([Message("r", 0, "coordinator", "payments", "psi.accept",
                                              {"envelope": offer.arrays["envelope"]},
                                              {"mode": "both", "peer": "bank"})]))
    assert accept.meta["parts"] == 5

    def pull(k: int) -> Message:
        return next(transport.exchange([Message("r", 0, "coordinator", "payments", "psi.pull",
                                                meta={"mode": "both", "peer": "bank", "part": k})]))

    with pytest.raises(PartyError, match="no part 2 waiting"):
        pull(2)  # skipping ahead
    pull(1)
    with pytest.raises(PartyError, match="no part 1 waiting"):
        pull(1)  # the same part twice


def test_parts_spliced_from_an_earlier_payload_abort_the_step() -> None:
    """Same run, same step, same index, same sizes: only the sealed payload tag tells the two payloads apart."""
    a, b = random_sets(9, 50, 40, 15)
    parties, transport = federation({"bank": a, "payments": b})
    for p in parties.values():
        p.part_rows = 8
    earlier: list[Message] = []

    def keep(parts: list[Message]) -> list[Message]:
        earlier.extend(parts)
        return parts

    run_psi(TamperingRelay(transport, keep, "payments"), "run-1", "bank", "payments", "both")
    assert len(earlier) >= 2

    def splice(parts: list[Message]) -> list[Message]:
        return [parts[0], earlier[1], *parts[2:]]

    with pytest.raises(PartyError, match="missing, repeated or out of order"):
        run_psi(TamperingRelay(transport, splice, "payments"), "run-1", "bank", "payments", "both")
