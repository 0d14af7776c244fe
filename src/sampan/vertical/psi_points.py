"""Curve points for PSI: hash to Curve25519, blinding with a secret scalar, matching blinded tokens.

The arithmetic is X25519 from `cryptography` (blinding is a Diffie-Hellman exchange with the point as
public key). The protocol that uses these (who blinds what, who learns what) is in `sampan.vertical.psi`.

Hash to curve (protocol v2) is Elligator 2 (RFC 9380 section 6.7.1, Z = 2), x-coordinate only: r = SHA-512(domain ||
id) reduced mod p = 2^255 - 19 (64 bytes reduced: bias about 2^-257), d = 1 + 2 r^2, u1 = -A / d; the point is
u1 if u1^3 + A u1^2 + u1 is a square, else -A - u1. Exactly one of the two is on the curve (their curve values
differ by the factor 2 r^2, a non-square), so every id takes one SHA-512 and one Legendre symbol, where the v1
try-and-increment took two of each on average; the square test is done on -A d (A^2 - A^2 d + d^2) (the curve
value times d^4, so no inverse is needed for it), and the inverses of d are batched per worker chunk
(Montgomery's trick: one modular inverse and three products per id). This is RFC 9380's `encode_to_curve`
(one map, no point addition, which x-only X25519 cannot do): outputs are not uniform on the curve (about half
the x-coordinates are reached, each by four hash values r: +-r on each of the two branches, so the map is
uniform on its image), but they are on the curve, of unknown discrete logarithm, and a reduction can embed any
point in the image by the inverse map (sample a point, keep it if it is in the image, pick one of its four
preimages), so DDH-based security holds with a factor-2 loss in running time. Corner cases: d is never 0
(-1/2 is not a square mod p), the curve value is never 0 (A^2 - 4 is not a square), and r = 0 (probability 2^-255)
would give u = 0, a low-order point that X25519 refuses.

Why not hash straight to a field element, u = H(id) with no square test (the default of SecretFlow's
`SodiumCurve25519Cryptor`, whose `HashToCurve` is SHA-256 of the item; its Elligator 2 cryptor is an option):
about half of such u lie on the quadratic twist. That is safe for the scalar (Curve25519 is twist-secure:
the twist's order is 4 l' with l' a 253-bit prime and clamped scalars are multiples of 8), and matching stays
exact (x25519 commutes on the twist too), but a blinded token stays on the twist exactly when H(id) does,
and whether H(id) is on the twist is a public function of the id. So each singly blinded token tells the
peer one bit of a hash of the id it hides; shuffled, the peer learns how many of the other party's ids
(and, after the run, of its ids outside the intersection) hash to the twist, which an ideal PSI does not
reveal (it tells apart two candidate sets of the same size whenever their twist counts differ;
tests/attacks/test_psi_hash_to_curve_twist.py). The price, measured with bench/psi_h2c_bench.py (CPU time per
id, loaded 2-core VM): this map 7.9 us, v1's try-and-increment 10.5 us, the direct map about 0.2 us, against
50 us per X25519 multiplication, i.e. a protocol floor of about 1.08x, 1.10x and 1.00x the raw rate (two of the
four multiplications per pair of ids are on hashed ids). Sampan pays the 8% to keep every hashed point on the
curve.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Any

import gmpy2
import numpy as np
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from sampan.errors import ProtocolError
from sampan.vertical._parallel import ParallelError, map_ranges


class PsiError(ProtocolError, ValueError):
    """A PSI input or protocol problem. Its text crosses the party boundary: it names parties, never ids."""


# --- hash to curve and blinding -------------------------------------------------------------------

POINT_BYTES = 32
_P = 2**255 - 19
_P_MPZ = gmpy2.mpz(_P)
_A = 486662
_A_SQ = gmpy2.mpz(_A * _A)
_MINUS_A = gmpy2.mpz(_P - _A)  # -A mod p
_DOMAIN = b"sampan/psi/v2/curve25519/elligator2/"  # the id follows
HASH_TO_CURVE = "curve25519-elligator2-sha512-v2"  # named in the offer: parties on other maps refuse each other


def _fast_from_public_bytes() -> Callable[[bytes], X25519PublicKey]:
    """`X25519PublicKey.from_public_bytes` without its per-call backend check (~1 us of ~36 us per point).

    The check is done once here; if cryptography's internal binding moves, use the public API.
    """
    try:
        from cryptography.hazmat.backends.openssl.backend import backend
        from cryptography.hazmat.bindings._rust import openssl as rust_openssl

        fast = rust_openssl.x25519.from_public_bytes
        if backend.x25519_supported() and callable(fast):
            return fast
    except (ImportError, AttributeError):  # pragma: no cover - other cryptography versions
        pass
    return X25519PublicKey.from_public_bytes  # pragma: no cover


_from_public_bytes = _fast_from_public_bytes()


def _work(key: X25519PrivateKey | None, ids: Sequence[bytes] | np.ndarray,
          points: np.ndarray | None = None) -> Callable[[int, int], bytes]:
    """Worker body over items 0..len(ids)+len(points): first hash-and-blind each id, then blind each point.

    One body for both jobs so a step that needs both (the label holder's ``psi.blind``) is one evenly
    split parallel map, not two with a barrier between them. With `key` None the ids' bare curve
    points are returned. `ids` may be a fixed-width ``S<w>`` array (`psi_ids.compact_ids`): each chunk
    is turned into bytes objects only inside the worker, so no per-id object lives for the whole run.
    Every lookup is bound locally: this loop is the per-item Python overhead on top of the X25519
    scalar multiplication, which dominates.
    """
    n_ids = len(ids)

    def hash_blind(start: int, stop: int) -> bytes:
        chunk = ids[start:stop]
        hashed = _elligator2(chunk.tolist() if isinstance(chunk, np.ndarray) else chunk)
        if key is None:
            return b"".join(hashed)
        exchange, from_public = key.exchange, _from_public_bytes
        return b"".join([exchange(from_public(point)) for point in hashed])

    def blind_points(start: int, stop: int) -> bytes:
        assert key is not None and points is not None
        exchange, from_public = key.exchange, _from_public_bytes
        raw = points[start:stop].tobytes()  # this chunk only
        return b"".join([exchange(from_public(raw[i:i + 32])) for i in range(0, len(raw), 32)])

    def run(start: int, stop: int) -> bytes:
        parts = []
        if start < n_ids:
            parts.append(hash_blind(start, min(stop, n_ids)))
        if stop > n_ids:
            parts.append(blind_points(max(start - n_ids, 0), stop - n_ids))
        return b"".join(parts)
    return run


def _elligator2(items: Sequence[bytes]) -> list[bytes]:
    """Elligator 2 x-coordinates (32 bytes, little-endian) of the ids, one Legendre symbol and a batched inverse each.

    Not constant time (Python big integers): the timing depends on the id, a side channel only to someone
    measuring the party's own machine, and the map runs before any message, in batches.
    """
    sha512, legendre, from_bytes = hashlib.sha512, gmpy2.legendre, gmpy2.mpz.from_bytes
    domain, p, a2 = _DOMAIN, _P_MPZ, _A_SQ
    ds, prefix, flip = [], [], []
    acc = gmpy2.mpz(1)
    for idb in items:
        r = from_bytes(sha512(domain + idb).digest(), "little")  # reduced mod p by the square below
        d = (r * r * 2 + 1) % p
        # The curve value at u1 = -A/d times d^4 is -A d (d^2 - A^2 d + A^2), and -A is not a square mod p,
        # so u1 is on the curve exactly when d (d (d - A^2) + A^2) is not a square (never 0; see above).
        flip.append(legendre(d * (d * (d - a2) + a2), p) == 1)
        ds.append(d)
        prefix.append(acc)
        acc = acc * d % p
    inv = _MINUS_A * gmpy2.invert(acc, p) % p  # -A / (d_0 ... d_{n-1}); no d is 0, so acc is not
    out = [b""] * len(ds)
    minus_a = _MINUS_A
    for i in range(len(ds) - 1, -1, -1):
        u = prefix[i] * inv % p  # -A / d_i, since inv is -A / (d_0 ... d_i) here
        inv = inv * ds[i] % p
        out[i] = ((minus_a - u) % p if flip[i] else u).to_bytes(32, "little")  # else -A - u1
    return out


def hash_to_curve(ids: Sequence[bytes] | np.ndarray) -> np.ndarray:
    """Unblinded curve points of UTF-8 ids as an (n, 32) uint8 array (for tests and audits)."""
    return _points(_work(None, ids)(0, len(ids)))


# Items per parallel map: the map's result (and its reassembly) is held twice in memory, so it is done in
# blocks written into one preallocated output (8 MiB per block, not 2 x 32 bytes x n at once).
BLOCK_ITEMS = 1 << 18


def _shifted(work: Callable[[int, int], bytes], offset: int) -> Callable[[int, int], bytes]:
    return lambda start, stop: work(offset + start, offset + stop)


def _hash_and_blind(ids: Sequence[bytes] | np.ndarray, key: X25519PrivateKey, workers: int | None,
                    points: np.ndarray | None = None, *, block: int = BLOCK_ITEMS,
                    in_place: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(H(id)^key for each id, point^key for each row of `points`), computed block by block in parallel.

    With `in_place` the blinded points overwrite `points` (a writable contiguous array the caller no longer
    needs): safe, since each block's workers read only their own rows, forked before that block is written.
    """
    extra = np.empty((0, POINT_BYTES), np.uint8) if points is None else _check_points(points)
    n_ids, total = len(ids), len(ids) + len(extra)
    mine = np.empty((n_ids, POINT_BYTES), dtype=np.uint8)
    # apart from `mine`, so neither keeps the other alive
    theirs = extra if in_place and extra.flags.writeable else np.empty((len(extra), POINT_BYTES), dtype=np.uint8)
    work = _work(key, ids, extra)
    for start in range(0, total, max(1, block)):
        stop = min(total, start + max(1, block))
        got = _points(map_ranges(_shifted(work, start), stop - start, POINT_BYTES, workers=workers))
        cut = min(max(n_ids - start, 0), stop - start)
        mine[start:start + cut] = got[:cut]
        if cut < stop - start:
            theirs[start + cut - n_ids:stop - n_ids] = got[cut:]
        del got
    return mine, theirs


def blind(points: np.ndarray, key: X25519PrivateKey, *, workers: int | None = None,
          in_place: bool = False) -> np.ndarray:
    """x25519(key, point) for each row of an (n, 32) uint8 array, in parallel worker processes.

    Raises ValueError for a malformed array or a low-order point (X25519 refuses an all-zero result).
    """
    arr = _check_points(points)
    try:
        return _hash_and_blind(np.empty(0, dtype="S1"), key, workers, arr, in_place=in_place)[1]
    except ParallelError as exc:
        raise ValueError(f"blinding failed: {exc}") from None


def _points(raw: bytes) -> np.ndarray:
    return np.frombuffer(raw, dtype=np.uint8).reshape(-1, POINT_BYTES)


def _check_points(points: Any) -> np.ndarray:
    arr = np.asarray(points)
    if arr.dtype != np.uint8 or arr.ndim != 2 or arr.shape[1] != POINT_BYTES:
        raise ValueError(f"points must be an (n, {POINT_BYTES}) uint8 array, got {arr.dtype} {arr.shape}")
    return np.ascontiguousarray(arr)


# --- matching -------------------------------------------------------------------------------------

def _key64(points: np.ndarray) -> np.ndarray:
    """The first 8 bytes of each token as a big-endian integer: sorts like the bytes themselves."""
    return np.ascontiguousarray(points[:, :8]).view(">u8").ravel().astype(np.uint64)


def _has_ties(sorted_keys: np.ndarray) -> bool:
    return bool(len(sorted_keys) > 1 and (sorted_keys[1:] == sorted_keys[:-1]).any())


def match_tokens(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Indices (ix, iy) with x[ix] == y[iy], in ascending byte order of the matched tokens.

    Numpy on 64-bit prefixes (sort y's, searchsorted x's), checked on all 32 bytes block by block; a prefix
    collision (about 2^-24 for a million tokens, or repeated points a peer sent) falls back to an exact match,
    vectorised too. Memory: about 50 bytes per token at peak on the fast path (never a copy of the tokens),
    about 72 per token of x and y together on the exact one.
    """
    x, y = _check_points(x), _check_points(y)
    if len(x) == 0 or len(y) == 0:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    ky = _key64(y)
    oy = np.argsort(ky, kind="stable")
    sy = ky[oy]
    del ky
    if _has_ties(sy):
        return _match_exact(x, y)
    kx = _key64(x)
    pos = np.searchsorted(sy, kx)
    np.minimum(pos, len(sy) - 1, out=pos)
    ix = np.flatnonzero(sy[pos] == kx)
    del sy
    matched = kx[ix]
    del kx
    order = np.argsort(matched, kind="stable")
    if _has_ties(matched[order]):
        return _match_exact(x, y)
    ix = ix[order].astype(np.int64)
    iy = oy[pos[ix]].astype(np.int64)
    del pos, oy
    for s in range(0, len(ix), _VERIFY_BLOCK):
        if not np.array_equal(x[ix[s:s + _VERIFY_BLOCK]], y[iy[s:s + _VERIFY_BLOCK]]):
            return _match_exact(x, y)
    return ix, iy


_VERIFY_BLOCK = 1 << 16  # tokens compared at a time: 4 MiB of copies


def _match_exact(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact match on all 32 bytes, vectorised: reached on a 64-bit prefix tie, which a peer can force by sending
    repeated points, so it must cost about what the fast path costs, not a Python dict over every token.

    One stable sort of y's tokens then x's on their four 64-bit words (big-endian, so the order is the bytes'
    order): an x token matches when the first token of its run of equal tokens is one of y's (the lowest such
    index when y repeats a token); the sorted order is the canonical one (token, then x index).
    """
    n_y = len(y)
    words = np.concatenate([_words(y), _words(x)])  # 32 bytes per token
    order = np.lexsort(words.T[::-1])  # primary key: the first word
    new = np.zeros(len(order), dtype=bool)
    new[0] = True
    for k in range(words.shape[1]):
        col = words[order, k]
        new[1:] |= col[1:] != col[:-1]
    del words
    first = order[np.flatnonzero(new)][np.cumsum(new) - 1]  # each sorted token's run head
    hit = (order >= n_y) & (first < n_y)
    return (order[hit] - n_y).astype(np.int64), first[hit].astype(np.int64)


def _words(points: np.ndarray) -> np.ndarray:
    """(n, 4) native uint64 words of each token, most significant first (they sort like the bytes)."""
    return np.ascontiguousarray(points).view(">u8").astype(np.uint64)
