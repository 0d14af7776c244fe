"""Shared templates (REVQ-8): the issuer deals Shamir shares of each serial's secret weights to the sites, so
no verification site holds the CDP key or any template.

Why. With `KeyedCorrelation` / `ModelVerifier` every site holds the issuer's CDP key: ONE curious or
compromised site rebuilds any serial's template and prints CDPs that pass as originals. Here the issuer (who
holds the key anyway) computes, at issuance, the secret weight vector w of each verifier for the serial (the
keyed correlation's (0, ..., 0, t / n), or the linear model expanded with the template), Shamir-shares it with
the same threshold t and sends one share to each site, sealed to the site's X25519 key (`TemplateDealer`). A
site stores its share (`VerificationSite.accept_template`) and, for a scan, computes sum_j w_i,j * x_i,j over
its shares of w and x: a point of the degree 2(t - 1) polynomial whose constant is w . x. The combiner must
know the score is a product (`Combiner(products=...)`) and needs 2t - 1 answers (cross-checked with 2t or
more). t - 1 colluding sites learn nothing about the template (their shares are uniform). The product
polynomial's higher coefficients would leak mixed functionals of x and w, so each site adds its point of a fresh
pseudo-random zero sharing (degree 2t - 2, constant 0; keyed per (t - 1)-set of sites by keys the issuer deals
with the template, evaluated on the scan's context): the combiner then sees a polynomial that is uniform but for
its constant, the score.

What this does not give (claim no more):
- the zero sharing is pseudo-random (HMAC-SHA512 keys), so that hiding is computational, and a scan id reused
  by a device reuses its masks (the device only harms its own scans' privacy that way);
- the score is an oracle: whoever both submits scans and reads the scores (a curious combiner scanning as a
  device) learns w . x for vectors x it chooses, so about n scans of ONE serial reveal its weights, with
  `KeyedCorrelation` as here (the zero sharing keeps the product from adding to it). Such a run is hundreds
  to thousands of scans of one serial: the registry's velocity flag sees it;
- t or more colluding sites reconstruct the template (the quorum that can verify can also forge: that is the
  t-of-S assumption, now for the key too), and the issuer still holds the key;
- the template must be dealt before the scan, for a fixed vector length, to a fixed site set (a new site needs
  a new deal); the sites keep the shares in memory here (a deployment stores them like any secret).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations

import numpy as np

from sampan.crypto.channel import PartyKeys, SealedChannels
from sampan.errors import ProtocolError
from sampan.qr.shares import PRIME, encode_bias, encode_weights, from_words, share_vector, to_words

__all__ = ["TemplateError", "SharedWeights", "TemplateEnvelope", "TemplateDealer", "TemplateShare", "ISSUER",
           "template_context", "open_template"]

ISSUER = "issuer"


class TemplateError(ProtocolError):
    """A template share that cannot be dealt, opened or used; the message names the serial and site."""


@dataclass(frozen=True)
class SharedWeights:
    """A site-side verifier whose secret weights the issuer dealt as Shamir shares (the site holds no key)."""

    name: str = "correlation"
    product = True   # its score is a degree-2 product of shares: the combiner needs 2t - 1 answers


@dataclass(frozen=True)
class TemplateEnvelope:
    """One site's sealed share of one verifier's weights for one serial (what the issuer sends)."""

    site: str
    verifier: str
    serial: str
    n_features: int
    threshold: int
    issuer_public: bytes
    sealed: np.ndarray


def template_context(verifier: str, serial: str, n_features: int, threshold: int) -> str:
    """Bound into the sealing: a share cannot be re-targeted to another serial, verifier or length."""
    return f"sampan-qr-template/v1/{verifier}/{serial}/t{threshold}/n{n_features}"


class TemplateDealer:
    """The issuer's side: shares each serial's secret weights among the sites (t of S)."""

    def __init__(self, sites: Sequence[tuple[str, int, bytes]], threshold: int) -> None:
        names = [name for name, _index, _key in sites]
        indices = [index for _name, index, _key in sites]
        if len(set(names)) != len(names) or len(set(indices)) != len(indices):
            raise TemplateError(f"template sites must have distinct names and indices: {names}")
        if not 2 <= threshold <= len(sites):
            raise TemplateError(f"threshold t = {threshold} must be between 2 and the number of sites {len(sites)}")
        self.sites, self.threshold = tuple(sites), threshold

    def deal(self, verifier: str, serial: str, weights: np.ndarray, bias: float = 0.0) -> list[TemplateEnvelope]:
        """One sealed share per site of (weights, bias) for `serial`, with the site's zero-sharing keys; fresh
        randomness, mask keys and issuer key per deal."""
        w = np.asarray(weights, dtype=np.float64)
        indices = [index for _n, index, _k in self.sites]
        shares = share_vector(encode_weights(w), self.threshold, indices)
        masks = {subset: secrets.token_bytes(32) for subset in combinations(sorted(indices), self.threshold - 1)}
        keys = PartyKeys.generate()
        context = template_context(verifier, serial, int(w.size), self.threshold)
        channels = SealedChannels(ISSUER, keys, {name: key for name, _i, key in self.sites}, context)
        out = []
        for name, index, _key in self.sites:
            hi, lo = to_words(shares[index])
            mine = [(subset, key) for subset, key in masks.items() if index not in subset]   # keys for B not holding i
            sets = np.array([j for subset, _k in mine for j in subset], dtype=np.uint64)
            mask_keys = np.frombuffer(b"".join(key for _s, key in mine), dtype=np.uint8)
            sealed = channels.seal_arrays(name, {"hi": hi, "lo": lo, "index": np.array([index], dtype=np.uint64),
                                                 "bias": np.array([bias], dtype=np.float64),
                                                 "mask_sets": sets, "mask_keys": mask_keys})
            out.append(TemplateEnvelope(name, verifier, serial, int(w.size), self.threshold, keys.public_bytes,
                                        sealed))
        return out


@dataclass(frozen=True)
class TemplateShare:
    """What a site keeps of one dealt template: its weight share, the encoded bias, t, and its zero-sharing keys
    (one per (t - 1)-set B of sites that excludes it)."""

    share: np.ndarray
    bias: int
    threshold: int
    masks: tuple[tuple[tuple[int, ...], bytes], ...]

    def point(self, feature_share: np.ndarray, index: int, context: str) -> int:
        """This site's point of w . x + b + M(z): the local product of two degree t - 1 shares (degree 2t - 2)
        plus a fresh pseudo-random zero sharing M (M(0) = 0, degree 2t - 2) that hides the product polynomial's
        higher coefficients: M(z) = sum_B sum_k PRF(r_B, context, k) z^k f_B(z), f_B(0) = 1, f_B = 0 on B
        (pseudo-random zero sharing, Cramer-Damgaard-Ishai 2005); any t - 1 sites miss some r_B."""
        if self.share.size != feature_share.size:
            raise TemplateError(f"template share of {self.share.size} values for a vector of {feature_share.size}")
        product = sum(int(a) * int(b) % PRIME for a, b in zip(self.share.tolist(), feature_share.tolist(),
                                                                strict=True))
        return (product + self.bias + self._mask(index, context)) % PRIME

    def _mask(self, index: int, context: str) -> int:
        total = 0
        for subset, key in self.masks:
            f_b = 1
            for j in subset:   # f_B(i) = prod (j - i) / j
                f_b = f_b * (j - index) % PRIME * pow(j, -1, PRIME) % PRIME
            for k in range(1, self.threshold):
                digest = hmac.new(key, f"{context}/{k}".encode(), hashlib.sha512).digest()
                total += int.from_bytes(digest, "big") % PRIME * pow(index, k, PRIME) % PRIME * f_b
        return total % PRIME


def open_template(envelope: TemplateEnvelope, site: str, index: int, keys: PartyKeys) -> TemplateShare:
    """A site opens its share of a dealt template (and its zero-sharing keys)."""
    if envelope.site != site:
        raise TemplateError(f"site {site!r}: template envelope for serial {envelope.serial!r} is for "
                            f"{envelope.site!r}")
    context = template_context(envelope.verifier, envelope.serial, envelope.n_features, envelope.threshold)
    arrays = SealedChannels(site, keys, {ISSUER: envelope.issuer_public}, context).open_arrays(ISSUER,
                                                                                               envelope.sealed)
    t = envelope.threshold
    if set(arrays) != {"hi", "lo", "index", "bias", "mask_sets", "mask_keys"} or arrays["index"].tolist() != [index]:
        raise TemplateError(f"site {site!r}: template envelope of serial {envelope.serial!r} is not a share for "
                            f"index {index}")
    sets, raw = arrays["mask_sets"].tolist(), arrays["mask_keys"].tobytes()
    count = len(raw) // 32
    if len(raw) != 32 * count or len(sets) != (t - 1) * count or count == 0 or index in sets:
        raise TemplateError(f"site {site!r}: zero-sharing keys of serial {envelope.serial!r} are malformed")
    masks = tuple((tuple(int(j) for j in sets[(t - 1) * c:(t - 1) * (c + 1)]), raw[32 * c:32 * (c + 1)])
                  for c in range(count))
    share = from_words(arrays["hi"], arrays["lo"])
    if share.size != envelope.n_features:
        raise TemplateError(f"site {site!r}: template share of {share.size} values, envelope says "
                            f"{envelope.n_features}")
    return TemplateShare(share, encode_bias(float(arrays["bias"][0])), t, masks)
