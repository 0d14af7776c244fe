"""Curve points for PSI: hash to Curve25519, blinding with a secret scalar, matching blinded tokens.

The arithmetic is X25519 from `cryptography` (blinding is a Diffie-Hellman exchange with the point as
public key); hash to curve is try-and-increment with a Legendre-symbol check (gmpy2), so every point is
on the curve and not its twist. The protocol that uses these (who blinds what, who learns what) is in
`sampan.vertical.psi`.
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
_MASK = (1 << 255) - 1
_DOMAIN = b"sampan/psi/v1/curve25519/try-and-increment"
_PREFIXES = [_DOMAIN + bytes([c]) for c in range(256)]  # domain || counter; the id follows


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
        sha512, legendre, mpz = hashlib.sha512, gmpy2.legendre, gmpy2.mpz
        prefixes, mask, p, p_mpz, a = _PREFIXES, _MASK, _P, _P_MPZ, _A
        exchange = key.exchange if key is not None else None
        from_public = _from_public_bytes
        chunk = ids[start:stop]
        items = chunk.tolist() if isinstance(chunk, np.ndarray) else chunk
        out: list[bytes] = []
        append = out.append
        for idb in items:
            for prefix in prefixes:
                # The mask keeps the low 255 bits: the digest's first 32 bytes, top bit cleared.
                u = int.from_bytes(sha512(prefix + idb).digest(), "little") & mask
                if u < p:
                    m = mpz(u)
                    if legendre(m * (m * (m + a) + 1), p_mpz) == 1:  # legendre reduces mod p itself
                        break
            else:  # probability 2^-256
                raise PsiError("hash to curve exhausted its counter")
            point = u.to_bytes(32, "little")
            append(exchange(from_public(point)) if exchange is not None else point)
        return b"".join(out)

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
