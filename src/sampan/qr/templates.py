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
more). t - 1 colluding sites learn nothing about the template (their shares are uniform).

What this does not give (claim no more):
- the product polynomial is not re-randomised (that needs a fresh zero sharing per scan among the sites or
  from the issuer; not implemented): the combiner learns its higher coefficients. Alone, they are uniform;
  with t - 1 colluding sites they add a few mixed functionals of x and w (for t = 2, s . w + x . u with s, u
  the colluder's shares) on top of the score;
- the score is an oracle: whoever both submits scans and reads the scores (a curious combiner scanning as a
  device) learns w . x for vectors x it chooses, so about n scans of ONE serial reveal its weights, with
  `KeyedCorrelation` as here; the unmasked product adds, per scan, the higher coefficients (a . w + x . b,
  a . b for t = 2, with a the device's own sharing slopes), so a few times fewer scans suffice. Such a run is
  hundreds to thousands of scans of one serial: the registry's velocity flag sees it; a fresh pseudo-random
  zero sharing per scan (keys dealt by the issuer to each (S - t + 1)-subset of sites) would remove the extra;
- t or more colluding sites reconstruct the template (the quorum that can verify can also forge: that is the
  t-of-S assumption, now for the key too), and the issuer still holds the key;
- the template must be dealt before the scan, for a fixed vector length, to a fixed site set (a new site needs
  a new deal); the sites keep the shares in memory here (a deployment stores them like any secret).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sampan.crypto.channel import PartyKeys, SealedChannels
from sampan.errors import ProtocolError
from sampan.qr.shares import PRIME, encode_bias, encode_weights, from_words, share_vector, to_words

__all__ = ["TemplateError", "SharedWeights", "TemplateEnvelope", "TemplateDealer", "ISSUER", "template_context",
           "open_template", "product_point"]

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
        """One sealed share per site of (weights, bias) for `serial`; fresh randomness and issuer key per deal."""
        w = np.asarray(weights, dtype=np.float64)
        shares = share_vector(encode_weights(w), self.threshold, [index for _n, index, _k in self.sites])
        keys = PartyKeys.generate()
        context = template_context(verifier, serial, int(w.size), self.threshold)
        channels = SealedChannels(ISSUER, keys, {name: key for name, _i, key in self.sites}, context)
        out = []
        for name, index, _key in self.sites:
            hi, lo = to_words(shares[index])
            sealed = channels.seal_arrays(name, {"hi": hi, "lo": lo, "index": np.array([index], dtype=np.uint64),
                                                 "bias": np.array([bias], dtype=np.float64)})
            out.append(TemplateEnvelope(name, verifier, serial, int(w.size), self.threshold, keys.public_bytes,
                                        sealed))
        return out


def open_template(envelope: TemplateEnvelope, site: str, index: int, keys: PartyKeys) -> tuple[np.ndarray, int]:
    """A site opens its share: (weight share as field elements, encoded bias)."""
    if envelope.site != site:
        raise TemplateError(f"site {site!r}: template envelope for serial {envelope.serial!r} is for "
                            f"{envelope.site!r}")
    context = template_context(envelope.verifier, envelope.serial, envelope.n_features, envelope.threshold)
    arrays = SealedChannels(site, keys, {ISSUER: envelope.issuer_public}, context).open_arrays(ISSUER,
                                                                                               envelope.sealed)
    if set(arrays) != {"hi", "lo", "index", "bias"} or arrays["index"].tolist() != [index]:
        raise TemplateError(f"site {site!r}: template envelope of serial {envelope.serial!r} is not a share for "
                            f"index {index}")
    share = from_words(arrays["hi"], arrays["lo"])
    if share.size != envelope.n_features:
        raise TemplateError(f"site {site!r}: template share of {share.size} values, envelope says "
                            f"{envelope.n_features}")
    return share, encode_bias(float(arrays["bias"][0]))


def product_point(weight_share: np.ndarray, feature_share: np.ndarray, bias: int) -> int:
    """This site's point of w . x + b: the local product of two degree t - 1 shares (degree 2t - 2)."""
    if weight_share.size != feature_share.size:
        raise TemplateError(f"template share of {weight_share.size} values for a vector of {feature_share.size}")
    return (sum(int(a) * int(b) % PRIME for a, b in zip(weight_share.tolist(), feature_share.tolist(),
                                                          strict=True)) + bias) % PRIME




