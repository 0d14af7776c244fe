"""The coordinator as a non-colluding dealer of correlated randomness (Beaver-style preprocessing).

Why a dealer: two-party secure computation needs correlated randomness (powers of a random mask,
truncation pairs, masked matrix-vector corrections). A party that holds no data and never sees a
masked opening — the coordinator, which only relays sealed envelopes — can deal it far faster than
any cryptographic generation (oblivious transfer, homomorphic encryption), at the price of one
assumption: the coordinator does not collude with a data party.

Bandwidth: every dealt value is split so that one holder's share is a ChaCha20 keystream under a
seed that holder received at setup (`DealerStream`), and only the other holder's share travels.

Trust: the dealer knows every mask it deals, so it must not collude with a data party, and a
malicious dealer can corrupt results at will (it cannot be caught without a second source of
correlations). What it can and cannot learn is written down in `secure_lr` ("What a malicious dealer
can do"). Seeds are fresh per protocol instance; parties refuse a seed they have seen before. Secure LR
also mixes each party's own fresh nonce into its seed (`bind_seed`, the nonce returned at setup), so a
dealer that repeats a seed still gets fresh streams: no seeded pad or mask repeats without the party.
"""

from __future__ import annotations

import hashlib
import os

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from sampan.crypto.channel import prg_uint64

__all__ = ["Dealer", "DealerStream", "bind_seed", "row_prg"]


def row_prg(seed: bytes, label: str, rows: np.ndarray, width: int) -> np.ndarray:
    """Rows `rows` of a pseudorandom (n, width) matrix over Z_2^64, each row drawn without the others.

    Why random access: a one-time pad over a whole table (U, n x d) need not be stored by the party or the
    dealer if any minibatch's rows can be regenerated. AES-256 in counter mode under a key derived from
    (seed, label): element (i, j) is half of the block AES_k(i * ceil(width / 2) + j // 2), so rows are
    independent of which other rows are drawn. The counters are distinct, so the ECB call on them is exactly
    the CTR keystream at those positions (ECB is only the vectorised way to ask for chosen counters).
    """
    key = hashlib.sha256(b"sampan/dealer/rows|" + seed + b"|" + label.encode()).digest()
    rows = np.asarray(rows, dtype=np.uint64)
    blocks = (width + 1) // 2
    counters = np.zeros((len(rows), blocks, 2), dtype="<u8")
    counters[:, :, 0] = rows[:, None] * np.uint64(blocks) + np.arange(blocks, dtype=np.uint64)[None, :]
    enc = Cipher(algorithms.AES(key), modes.ECB()).encryptor()  # nosec B305: distinct counters = CTR keystream
    out = np.frombuffer(enc.update(counters.tobytes()), dtype="<u8").astype(np.uint64, copy=False)
    return out.reshape(len(rows), 2 * blocks)[:, :width]


def bind_seed(seed: bytes, party_nonce: bytes) -> bytes:
    """The seed a party's stream really uses: H(dealer seed | the party's own fresh nonce)."""
    return hashlib.sha256(b"sampan/dealer/bound-seed|" + seed + b"|" + party_nonce).digest()


class DealerStream:
    """A party's view of the dealer: the seeded half of every dealt value, drawn locally."""

    def __init__(self, seed: bytes) -> None:
        self._seed = seed

    def draw(self, label: str, n: int) -> np.ndarray:
        return prg_uint64(self._seed, label, n)

    def draw_many(self, label: str, count: int, n: int) -> list[np.ndarray]:
        flat = prg_uint64(self._seed, label, count * n)
        return [flat[i * n:(i + 1) * n] for i in range(count)]

    def draw_rows(self, label: str, rows: np.ndarray, width: int) -> np.ndarray:
        """Rows of a seeded (n, width) pad, regenerated on demand (`row_prg`): nobody stores a whole-table pad."""
        return row_prg(self._seed, label, rows, width)


class Dealer:
    """Deals for one run. `seeds[p]` goes to party p once, over its own link, at setup."""

    def __init__(self, parties: list[str]) -> None:
        self.seeds = {p: os.urandom(32) for p in parties}
        self._own = os.urandom(32)  # the dealer's private randomness (the masks themselves)
        self._pads: dict[tuple[str, str, str], tuple[int, int]] = {}  # shapes only: pad rows are regenerated
        self._bound: dict[str, bytes] = {}

    def bind(self, party: str, party_nonce: bytes) -> None:
        """Use the seed bound to `party`'s own nonce (returned in its setup reply) for everything dealt after."""
        self._bound[party] = bind_seed(self.seeds[party], party_nonce)

    def stream(self, party: str) -> DealerStream:
        return DealerStream(self._bound.get(party, self.seeds[party]))

    def _secret(self, label: str, n: int) -> np.ndarray:
        return prg_uint64(self._own, label, n)

    def powers(self, label: str, n: int, degree: int, seeded: str) -> list[np.ndarray]:
        """Shares of a, a^2, ..., a^degree for a uniform a: `seeded` draws its half, the rest is returned."""
        a = self._secret(label, n)
        mine = self.stream(seeded).draw_many(label, degree, n)
        out, power = [], a.copy()
        for k in range(degree):
            out.append(power - mine[k])
            power = power * a
        return out

    def truncation_pair(self, label: str, n: int, shift: int, seeded: str) -> list[np.ndarray]:
        """Shares of (r, floor(r / 2^shift), msb(r)); the non-seeded holder's half is returned."""
        r = self._secret(label, n)
        mine = self.stream(seeded).draw_many(label, 3, n)
        return [r - mine[0], (r >> np.uint64(shift)) - mine[1], (r >> np.uint64(63)) - mine[2]]

    def mask_matrix(self, party: str, holder: str, n: int, d: int, label: str = "U") -> None:
        """Register U: the one-time pad over party p's fixed-point feature matrix as sent to `holder`.

        label "U": the training rows; "Uv": the validation rows (shared weights only). Only the shape is kept:
        each batch regenerates its rows from p's seeded stream (`DealerStream.draw_rows`), as p does, so the
        dealer's memory is one batch, not n x d ring elements per pad."""
        self._pads[(party, holder, label)] = (n, d)

    def _pad_rows(self, party: str, holder: str, label: str, rows: np.ndarray) -> np.ndarray:
        try:
            n, d = self._pads[(party, holder, label)]
        except KeyError:
            raise ValueError(f"dealer: no pad {label!r} of {party!r} for {holder!r} was registered") from None
        rows = np.asarray(rows, dtype=np.int64)
        if len(rows) and (rows.min() < 0 or rows.max() >= n):
            raise ValueError(f"dealer: rows outside the {n} rows of pad {label!r} of {party!r}")
        return self.stream(party).draw_rows(f"{label}/{holder}", rows, d)

    def cross_correction(self, party: str, holder: str, t: int, rows: np.ndarray) -> np.ndarray:
        """The holder's half C_Q = U[rows]^T a - C_p of the Beaver product X_p^T r_Q for batch t.

        a is the mask `holder` draws to hide its residual share; C_p is party p's own seeded half, so
        neither p (which never sees U^T a) nor the holder (which never sees U) can use it alone.
        """
        U = self._pad_rows(party, holder, "U", rows)
        a = self.stream(holder).draw(f"a/{party}/{t}", len(rows))
        return U.T @ a - self.stream(party).draw(f"C/{holder}/{t}", U.shape[1])

    def logit_correction(self, party: str, holder: str, t: int, rows: np.ndarray, *, validation: bool) -> np.ndarray:
        """Shared weights: the co-holder's half U[rows] b - D of the product X_p w_p^(h) for batch t.

        b is the mask the co-holder draws to hide its weight share (it sends w^(h) - b to p); D is p's own
        seeded half, so p (which never sees U b) and the co-holder (which never sees U) cannot use it alone.
        """
        U = self._pad_rows(party, holder, "Uv" if validation else "U", rows)
        b = self.stream(holder).draw(f"b/{party}/{t}", U.shape[1])
        return U @ b - self.stream(party).draw(f"D/{holder}/{t}", len(rows))
