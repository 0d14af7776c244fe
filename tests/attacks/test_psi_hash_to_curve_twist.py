"""Hash to curve (Elligator 2, protocol v2): no token on the twist, and a partner's low-order points refused.

Attack 1 (curious partner, semi-honest): hashing ids straight to a field element (u = SHA-256(id), as some
ECDH-PSI implementations do) puts about half of them on Curve25519's quadratic twist, and blinding keeps a
point on the curve or twist it started on; whether H(id) is on the twist is a public function of the id.
So a partner that counts the label holder's singly blinded tokens lying on the twist tells apart two candidate
sets of the same size whenever their twist counts differ. The control below shows that attack works against the
direct map; against Sampan's map every token the partner receives is on the curve, so the count is the set size
for any set.

Attack 2 (malicious partner): psi.accept carries low-order points (order 1, 2, 4 or 8, on the curve or the twist,
canonical or not), whose blinded value would reveal the label holder's scalar modulo a small order or be a
constant token. X25519 returns all zeros for them; the label holder refuses the step with an error naming the
partner, and nothing is sent back.
"""

from __future__ import annotations

import hashlib
from typing import Any

import gmpy2
import numpy as np
import pytest

from sampan.core.party import PartyApp
from sampan.crypto.channel import PartyKeys, SealedChannels
from sampan.transport.inprocess import InProcessTransport
from sampan.vertical.psi import run_psi
from sampan.vertical.psi_party import PsiParty, _new_scalar
from sampan.vertical.psi_points import blind
from sampan.wire import Message

P, A = 2**255 - 19, 486662
LOW_ORDER = [0, 1, P - 1, P, P + 1,
             325606250916557431795983626356110631294008115727848805560023387167927233504,
             39382357235489614581723060781553021112529911719440698176882885853963445705823]


def _on_twist(points: np.ndarray) -> int:
    count = 0
    for row in points:
        u = int.from_bytes(bytes(row), "little") % P
        count += gmpy2.legendre((u**3 + A * u * u + u) % P, P) == -1
    return count


class CuriousPartner(PsiParty):
    """Follows the protocol; keeps the label holder's singly blinded tokens it receives in psi.blind."""

    seen: np.ndarray | None = None

    def _receive(self, request: Message, peer: str, kind: str) -> Message:
        inner = super()._receive(request, peer, kind)
        if kind == "psi.blind":
            self.seen = np.array(inner.arrays["points"])
        return inner


class LowOrderPartner(PsiParty):
    """Sends low-order points instead of its blinded ids in psi.accept (well-formed arrays, right count)."""

    def _accept(self, request: Message) -> Message:
        reply = super()._accept(request)  # sets up the session; its sealed reply is replaced below
        peer = str(request.meta["peer"])
        n = len(self._prepare())
        rows = [LOW_ORDER[i % len(LOW_ORDER)] % 2**255 for i in range(n)]
        points = np.frombuffer(b"".join(u.to_bytes(32, "little") for u in rows), np.uint8).reshape(n, 32)
        del reply
        return self._send(request, peer, "psi.accept", {"points": points.copy()},
                          {"n": n, "shape": self._prepare().shape, "hash_to_curve": _map_name()}, {"n": n})


def _map_name() -> str:
    from sampan.vertical.psi_points import HASH_TO_CURVE

    return HASH_TO_CURVE


def _run(bank_ids: list[str], partner: PsiParty, mode: str = "both") -> PsiParty:
    bank = PsiParty("bank", np.array(bank_ids, dtype=object), workers=1)
    keys = {"bank": PartyKeys.generate(), "partner": PartyKeys.generate()}
    public = {n: k.public_bytes for n, k in keys.items()}
    roles = {"bank": "label_holder", "partner": "partner"}
    apps = {}
    for name, party in (("bank", bank), ("partner", partner)):
        app = PartyApp(name)
        party.register(app)
        party.channels = SealedChannels(name, keys[name], public, "run-h2c", roles=roles)
        apps[name] = app
    run_psi(InProcessTransport(apps), "run-h2c", "bank", "partner", mode)
    return bank


def _direct_twist_count(ids: list[str]) -> int:
    """The attack against the direct map u = SHA-256(id) (top bit cleared, as X25519 reads it), blinded."""
    raw = b"".join(hashlib.sha256(i.encode()).digest() for i in ids)
    points = np.frombuffer(raw, np.uint8).reshape(-1, 32).copy()
    points[:, 31] &= 0x7F
    return _on_twist(blind(points, _new_scalar(), workers=1))


def _two_sets() -> tuple[list[str], list[str]]:
    """Two 30-id sets of the same shape and size whose direct-map twist counts differ."""
    pool = [f"BR{i:08d}" for i in range(400)]
    twist = [i for i in pool if _direct_twist_count([i]) == 1]
    curve = [i for i in pool if i not in twist]
    return twist[:20] + curve[:10], twist[20:25] + curve[10:35]


def test_a_curious_partner_cannot_tell_two_sets_apart_by_twist_counts() -> None:
    s0, s1 = _two_sets()
    common = ["BR99999999"]
    assert _direct_twist_count(s0) != _direct_twist_count(s1)  # the attack works on the direct map
    counts = []
    for bank_ids in (s0 + common, s1 + common):
        partner = CuriousPartner("partner", np.array(common + ["BR88888888"], dtype=object), workers=1)
        _run(bank_ids, partner)
        assert partner.seen is not None and len(partner.seen) == len(bank_ids)
        counts.append(_on_twist(partner.seen))
    assert counts == [0, 0]


@pytest.mark.parametrize("mode", ["both", "cardinality"])
def test_a_partner_sending_low_order_points_is_refused(mode: str) -> None:
    ids = [f"BR{i:08d}" for i in range(12)]
    partner = LowOrderPartner("partner", np.array(ids, dtype=object), workers=1)
    with pytest.raises(Exception, match="blinding failed") as caught:
        _run(ids, partner, mode)
    assert "partner" in str(caught.value) and "BR0000" not in str(caught.value)


def test_every_low_order_point_is_refused_by_blinding() -> None:
    for u in LOW_ORDER:
        point = np.frombuffer((u % 2**255).to_bytes(32, "little"), np.uint8).reshape(1, 32)
        with pytest.raises(ValueError):
            blind(point, _new_scalar(), workers=1)


class OldMapLabelHolder(PsiParty):
    """A label holder on another hash-to-curve map (v1's offer had no "hash_to_curve" field)."""

    def _seal(self, request: Message, peer: str, kind: str, *args: Any, **kwargs: Any) -> Any:
        if kind == "psi.offer":
            kwargs["meta"] = {k: v for k, v in kwargs["meta"].items() if k != "hash_to_curve"}
        return super()._seal(request, peer, kind, *args, **kwargs)


def test_parties_on_different_maps_refuse_instead_of_matching_nothing() -> None:
    ids = [f"BR{i:08d}" for i in range(6)]
    bank = OldMapLabelHolder("bank", np.array(ids, dtype=object), workers=1)
    partner = PsiParty("partner", np.array(ids, dtype=object), workers=1)
    keys = {"bank": PartyKeys.generate(), "partner": PartyKeys.generate()}
    public = {n: k.public_bytes for n, k in keys.items()}
    roles = {"bank": "label_holder", "partner": "partner"}
    apps = {}
    for name, party in (("bank", bank), ("partner", partner)):
        app = PartyApp(name)
        party.register(app)
        party.channels = SealedChannels(name, keys[name], public, "run-h2c", roles=roles)
        apps[name] = app
    with pytest.raises(Exception, match="hashes ids to the curve with None"):
        run_psi(InProcessTransport(apps), "run-h2c", "bank", "partner", "both")
