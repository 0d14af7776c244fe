"""Distributed verification: the device's features are Shamir-shared among S verification sites and the
verdict needs a quorum of t of them (issue 20, item 3).

Flow. The scanning device extracts the feature vector x (`sampan.qr.features`, no key), encodes it in
fixed point and lifts it into GF(2^127 - 1) (`sampan.qr.shares`), and splits it into S Shamir shares of
threshold t. Each share is sealed to its site with `sampan.crypto.channel.SealedChannels`: a fresh X25519
key of the device per scan, the site's published X25519 key, HKDF-SHA256 bound to the scan id, the serial,
t and the vector length, ChaCha20-Poly1305. Every site applies each LINEAR verifier (`sampan.qr.linear`:
the keyed correlation, whose template only key holders can form, and the linear verification model
w . x + b trained by `sampan.qr.federated`) to its share and returns one field element per verifier.
A combiner interpolates any t partial results at 0 (Shamir reconstruction is linear) to get the scores,
thresholds them and gives the verdict.

Quorum and standardisation (REVQ-7, REVQ-14). t >= 2 and S >= t are enforced: with t = 1 every share would
BE the feature vector (a degree-0 polynomial). For a vector with the feature layout (statistics + CDP cells)
the sites also return the moments sum(cells) and sum(cells^2) of their share, and the combiner accepts the
scores only if the cells are standardised (mean 0, variance 1): the sites cannot re-standardise shares, and
without the check a device that scales a copy's cells by 2 doubles its correlation. The sum of squares is a
product of shares, so a verdict on such a vector needs 2t - 1 answers (`sampan.qr.cellcheck` gives the design,
what it costs and what it leaves open: a device that deviates from the sharing itself).

Binding (REVQ-15): each partial result echoes the scan id, serial and vector length the site evaluated; the
combiner refuses partials that disagree (or that name another serial than the one it is asked about) and the
`Verdict` names the serial.

The CDP key (REVQ-8): every site that runs `KeyedCorrelation` or `ModelVerifier` holds the issuer's CDP
key, the largest secret in the system: ONE curious or compromised site (not a quorum) can rebuild any
serial's template and print CDPs that pass as originals; the t-of-S sharing protects the capture, not that
key. Deploy such sites only if each is trusted with the key. The alternative, `sampan.qr.templates`: the issuer
deals, at issuance, Shamir shares of each serial's secret weights to the sites (`TemplateDealer`,
`VerificationSite.accept_template`, verifier `SharedWeights`); no site holds the key or a template, and the
score is a degree-2 product of shares, re-randomised by a pseudo-random zero sharing, so 2t - 1 answers
(`Combiner(products=...)`); that module states what it leaves open.

Threat model and what is claimed:

- Curious sites (honest-but-curious, up to t - 1 colluding, any subset): their shares are uniform and
  independent of x - information-theoretic, not a computational assumption (tests/attacks/
  test_qr_sites_curious.py tries to recover x from t - 1 shares and gets chance). A site cannot open another
  site's envelope (AEAD under a different key).
- The combiner (curious) sees only the partial results: points of a degree t - 1 polynomial whose constant is
  the score and whose other coefficients are uniform. It learns the scores, nothing else; t - 1 sites
  colluding with it still learn only the scores (their shares plus the partials pin down w . x and nothing
  more; argued here, the attack tests cover the combiner alone). The scores themselves are functions of x
  (one number per verifier): they are the output, released.
- Malicious sites (wrong or forged partial result): with m answers, up to m - t wrong partials are DETECTED
  (the m points do not lie on one polynomial of degree < t, a Reed-Solomon check); the combiner then refuses
  a verdict (`InconsistentResultsError`) and names the culprits when they are within the unique-decoding radius
  (m >= t + 2e). With exactly t answers nothing can be checked: the verdict says `checked=False`.
- Not covered: t or more colluding sites reconstruct x; when fewer than t of the answering sites are honest
  (more than m - t liars), detection is no longer guaranteed; a device that lies about its
  features (the features are computed on the device: a forger can replay a genuine capture's features - the
  issuer registry's reuse and velocity flags answer that, not this module); traffic analysis; the site ->
  combiner link is assumed authenticated (mutual TLS in a deployment; here in-process); site keys are
  long-lived, so a stolen site key opens that site's past shares (no forward secrecy on the site side).
- The scores are an oracle: a combiner that also submits scans (anyone can be a device) learns w . x for x it
  chooses; about n scans of one serial reveal that serial's template (the registry's velocity flag sees them).
- The sites learn the serial (they need it for the template) and the scan id; not the user or device.
- With the moments (above), the combiner also learns sum(cells) and sum(cells^2), which for an honest device
  are 0 and n; with t - 1 colluding sites, one extra linear functional of the cells (`sampan.qr.cellcheck`).
- Outsiders: the sealing is computational (X25519, ChaCha20-Poly1305), unlike the sharing. The device must get
  the sites' public keys from a trusted source (e.g. a site list signed by the issuer; `sampan.crypto.identity`
  certifies party keys in a run): `make_request` trusts the `SiteInfo` it is given, and a substituted key would
  let its holder open that one share (still only one share).

Precision: features carry 2^-20, weights 2^-30; a reconstructed score is within about 1e-4 of the plaintext
score for the Q3 feature vector (1774 values).

Quorum: fewer than t answers -> `NoQuorumError`, never a verdict.
"""

from __future__ import annotations

import secrets
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

import numpy as np

from sampan.crypto.channel import PartyKeys, SealedChannels
from sampan.errors import ProtocolError
from sampan.qr import cellcheck
from sampan.qr.features import N_STATS
from sampan.qr.linear import LinearVerifierModel, correlation_weights
from sampan.qr.shares import (
    PRIME,
    consistent_subset,
    decode_value,
    encode_bias,
    encode_vector,
    encode_weights,
    from_words,
    reconstruct,
    share_vector,
    to_words,
)
from sampan.qr.templates import SharedWeights, TemplateEnvelope, TemplateShare, open_template

__all__ = ["DistributedError", "NoQuorumError", "InconsistentResultsError", "SiteInfo", "LinearVerifier",
           "KeyedCorrelation", "ModelVerifier", "FixedLinear", "ScanRequest", "PartialResult", "Verdict",
           "make_request", "VerificationSite", "Combiner", "verify_distributed"]

DEVICE = "device"
MAX_SITES = 16


class DistributedError(ProtocolError):
    """A request, partial result or site set the distributed verification cannot use; the message names it."""


class NoQuorumError(DistributedError):
    """Fewer than t sites answered: no verdict."""


class InconsistentResultsError(DistributedError):
    """The partial results do not lie on one polynomial: at least one site answered wrongly. No verdict."""

    def __init__(self, message: str, suspects: tuple[str, ...]) -> None:
        super().__init__(message)
        self.suspects = suspects


@dataclass(frozen=True)
class SiteInfo:
    """What a device and the combiner know of a site: its name, public Shamir index and X25519 key."""

    name: str
    index: int
    public_key: bytes


class LinearVerifier(Protocol):
    """A verifier linear in the feature vector: a site applies (weights, bias) to its share."""

    @property
    def name(self) -> str: ...

    def weights(self, serial: str, n_features: int) -> tuple[np.ndarray, float]: ...


@dataclass(frozen=True)
class KeyedCorrelation:
    """Correlation with the keyed template of the serial (the site holds the issuer's CDP key)."""

    key: bytes
    name: str = "correlation"

    def weights(self, serial: str, n_features: int) -> tuple[np.ndarray, float]:
        return correlation_weights(self.key, serial, n_features)


@dataclass(frozen=True)
class ModelVerifier:
    """The linear verification model (trained by `sampan.qr.federated`), expanded with the keyed template."""

    model: LinearVerifierModel
    key: bytes
    name: str = "model"

    def weights(self, serial: str, n_features: int) -> tuple[np.ndarray, float]:
        return self.model.expanded(self.key, serial, n_features)


@dataclass(frozen=True)
class FixedLinear:
    """A serial-independent linear score w . x + b over a generic vector (key-free verifiers, tests)."""

    name: str
    w: np.ndarray
    b: float = 0.0

    def weights(self, serial: str, n_features: int) -> tuple[np.ndarray, float]:
        if self.w.shape != (n_features,):
            raise DistributedError(f"verifier {self.name!r} has {self.w.size} weights, the request {n_features} values")
        return self.w, self.b


@dataclass(frozen=True)
class ScanRequest:
    """What the device sends: public header + one sealed share per site (only that site can open it)."""

    scan_id: str
    serial: str
    threshold: int
    n_features: int
    device_public: bytes
    envelopes: Mapping[str, np.ndarray]

    @property
    def context(self) -> str:
        """Bound into every envelope's key derivation and AAD: changing any header field breaks them."""
        return f"sampan-qr-scan/v1/{self.scan_id}/{self.serial}/t{self.threshold}/n{self.n_features}"


@dataclass(frozen=True)
class PartialResult:
    """One site's answer: a field element per verifier (and the cell moments), at the site's Shamir index,
    naming the scan, serial and vector length it evaluated (the combiner refuses partials that disagree)."""

    site: str
    index: int
    scan_id: str
    values: Mapping[str, int]
    serial: str = ""
    n_features: int = 0
    products: tuple[str, ...] = ()   # scores that are degree-2 products (dealt templates): 2t - 1 to open


@dataclass(frozen=True)
class Verdict:
    """The combiner's output: the scores, the verdict, which sites were used and whether they were cross-checked."""

    scan_id: str
    scores: dict[str, float]
    verdict: Literal["original", "copy"]
    sites: tuple[str, ...]
    checked: bool   # every value was cross-checked: more answers than it needs (t, or 2t - 1 for products)
    serial: str = ""          # the serial the sites evaluated (bind the verdict to it, not to the scan id alone)
    standardised: bool | None = None   # cells check (None: the vector has no cells); False forces "copy"
    moments: dict[str, float] = field(default_factory=dict)   # cells mean / variance when checked


def _check_sites(sites: Sequence[SiteInfo], threshold: int) -> None:
    names = [s.name for s in sites]
    indices = [s.index for s in sites]
    if len(set(names)) != len(names) or len(set(indices)) != len(indices) or DEVICE in names:
        raise DistributedError(f"sites must have distinct names (not {DEVICE!r}) and distinct indices: {names}")
    if any(not 0 < i < PRIME for i in indices):
        raise DistributedError("site indices must be positive")
    if len(sites) > MAX_SITES:
        raise DistributedError(f"at most {MAX_SITES} sites (the consistency check tries every t-subset), "
                               f"got {len(sites)}")
    if not 2 <= threshold <= len(sites):
        raise DistributedError(f"threshold t = {threshold} must be between 2 and the number of sites {len(sites)} "
                               f"(t = 1 would give every site the whole feature vector; S >= t >= 2)")


def make_request(features: np.ndarray, serial: str, sites: Sequence[SiteInfo], threshold: int) -> ScanRequest:
    """The device side: encode, share (t of S) and seal one share per site."""
    _check_sites(sites, threshold)
    x = np.asarray(features, dtype=np.float64)
    encoded = encode_vector(x)
    shares = share_vector(encoded, threshold, [s.index for s in sites])
    keys = PartyKeys.generate()   # per scan: two scans of one device are unlinkable by key
    header = ScanRequest(secrets.token_hex(16), serial, threshold, int(x.size), keys.public_bytes, {})
    channels = SealedChannels(DEVICE, keys, {s.name: s.public_key for s in sites}, header.context)
    envelopes = {}
    for site in sites:
        hi, lo = to_words(shares[site.index])
        envelopes[site.name] = channels.seal_arrays(
            site.name, {"hi": hi, "lo": lo, "index": np.array([site.index], dtype=np.uint64)})
    return ScanRequest(header.scan_id, serial, threshold, header.n_features, header.device_public, envelopes)


class VerificationSite:
    """A verification site: its X25519 key pair, its Shamir index and the linear verifiers it runs."""

    def __init__(self, name: str, index: int, verifiers: Sequence[LinearVerifier | SharedWeights]) -> None:
        names = [v.name for v in verifiers]
        if not verifiers or len(set(names)) != len(names):
            raise DistributedError(f"site {name!r} needs at least one verifier, with distinct names: {names}")
        self.name, self.index, self.verifiers = name, index, tuple(verifiers)
        self._keys = PartyKeys.generate()
        self._templates: dict[tuple[str, str, int], TemplateShare] = {}

    def accept_template(self, envelope: TemplateEnvelope) -> None:
        """Store this site's share of a serial's secret weights, dealt by the issuer (`sampan.qr.templates`)."""
        if not any(isinstance(v, SharedWeights) and v.name == envelope.verifier for v in self.verifiers):
            raise DistributedError(f"site {self.name!r} runs no shared-weights verifier {envelope.verifier!r}")
        held = open_template(envelope, self.name, self.index, self._keys)
        self._templates[(envelope.verifier, envelope.serial, envelope.n_features)] = held

    @property
    def info(self) -> SiteInfo:
        return SiteInfo(self.name, self.index, self._keys.public_bytes)

    def open_share(self, request: ScanRequest) -> np.ndarray:
        """This site's share of the request's features (field elements): everything it learns about them."""
        envelope = request.envelopes.get(self.name)
        if envelope is None:
            raise DistributedError(f"site {self.name!r}: the request {request.scan_id} carries no share for it")
        channels = SealedChannels(self.name, self._keys, {DEVICE: request.device_public}, request.context)
        arrays = channels.open_arrays(DEVICE, envelope)
        if set(arrays) != {"hi", "lo", "index"} or arrays["index"].tolist() != [self.index]:
            raise DistributedError(f"site {self.name!r}: envelope of request {request.scan_id} is not a share for "
                                   f"index {self.index}")
        share = from_words(arrays["hi"], arrays["lo"])
        if share.size != request.n_features:
            raise DistributedError(f"site {self.name!r}: share of {share.size} values, header says "
                                   f"{request.n_features}")
        return share

    def answer(self, request: ScanRequest) -> PartialResult:
        """Apply every linear verifier to this site's share."""
        share = self.open_share(request)
        values = {}
        for verifier in self.verifiers:
            if isinstance(verifier, SharedWeights):
                held = self._templates.get((verifier.name, request.serial, request.n_features))
                if held is None or held.threshold != request.threshold:
                    raise DistributedError(f"site {self.name!r} holds no {verifier.name!r} template share for "
                                           f"serial {request.serial!r} (n = {request.n_features}, t = "
                                           f"{request.threshold}): the issuer must deal it first")
                values[verifier.name] = held.point(share, self.index, f"{request.context}/{verifier.name}")
                continue
            w, b = verifier.weights(request.serial, request.n_features)
            values[verifier.name] = (int(np.dot(encode_weights(w), share)) + encode_bias(b)) % PRIME
        if cellcheck.has_cells(request.n_features):
            values.update(cellcheck.cell_moments(share))
        products = tuple(sorted(v.name for v in self.verifiers if isinstance(v, SharedWeights)))
        return PartialResult(self.name, self.index, request.scan_id, values, request.serial, request.n_features,
                             products)


@dataclass
class Combiner:
    """Reconstructs the scores from t partial results and thresholds them.

    ``accept``: score name -> threshold; the verdict is "original" when every named score reaches its threshold.
    ``require_checked``: refuse a verdict unless more than t sites answered and agreed (a malicious site would
    otherwise go unnoticed).
    ``products``: scores that are degree-2 products of shares (`sampan.qr.templates.SharedWeights`): each is
    reconstructed from 2t - 1 answers."""

    threshold: int
    sites: Sequence[SiteInfo]
    accept: Mapping[str, float]
    require_checked: bool = False
    products: Collection[str] = ()
    _products: frozenset[str] = field(init=False, repr=False)
    _by_name: dict[str, SiteInfo] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        _check_sites(self.sites, self.threshold)
        self._products = frozenset(self.products)
        if not self.accept:
            raise DistributedError("combiner field 'accept' must name at least one score and its threshold")
        self._by_name = {s.name: s for s in self.sites}

    def combine(self, scan_id: str, partials: Sequence[PartialResult], *, serial: str | None = None) -> Verdict:
        """The verdict from the sites' answers (see the module docstring for what is checked); with `serial`,
        partials that evaluated another serial are refused."""
        answered: dict[int, PartialResult] = {}
        for p in partials:
            site = self._by_name.get(p.site)
            if site is None or site.index != p.index:
                raise DistributedError(f"partial result from unknown site {p.site!r} (index {p.index})")
            if p.scan_id != scan_id:
                raise DistributedError(f"site {p.site!r} answered scan {p.scan_id}, not {scan_id}")
            if serial is not None and p.serial != serial:
                raise DistributedError(f"site {p.site!r} evaluated serial {p.serial!r}, not {serial!r}")
            if p.index in answered:
                raise DistributedError(f"site {p.site!r} answered twice")
            answered[p.index] = p
        t, m = self.threshold, len(answered)
        if m < t:
            got = sorted(p.site for p in answered.values())
            raise NoQuorumError(f"no quorum for scan {scan_id}: {m} of {len(self.sites)} sites answered {got}, "
                                f"{t} needed; no verdict")
        first = next(iter(answered.values()))
        if any((p.serial, p.n_features) != (first.serial, first.n_features) for p in answered.values()):
            raise DistributedError(f"sites disagree on the serial or vector length they evaluated for scan {scan_id}: "
                                   f"{sorted({(p.serial, p.n_features) for p in answered.values()})}")
        names = set(first.values) - set(cellcheck.MOMENTS)
        cells = cellcheck.has_cells(first.n_features)
        if cells and any(set(p.values) & set(cellcheck.MOMENTS) != set(cellcheck.MOMENTS)
                         for p in answered.values()):
            raise DistributedError(f"scan {scan_id}: a vector with CDP cells needs every site's cell moments "
                                   f"(the standardisation check); a site omitted them")
        if cells and m < 2 * t - 1:
            raise NoQuorumError(f"scan {scan_id}: {m} sites answered; the cells' standardisation check multiplies "
                                f"shares and needs {2 * t - 1} (2t - 1); no verdict")
        if missing := set(self.accept) - names:
            raise DistributedError(f"no site computed the score(s) {sorted(missing)} named in 'accept'")
        if any(set(p.values) - set(cellcheck.MOMENTS) != names for p in answered.values()):
            raise DistributedError(f"sites disagree on which scores they computed for scan {scan_id}")
        if any(set(p.products) != self._products & names for p in answered.values()):
            computed = sorted({n for p in answered.values() for n in p.products})
            raise DistributedError(f"scan {scan_id}: the sites computed {computed} "
                                   f"as products of shares; the combiner expects {sorted(self._products & names)} "
                                   f"(set Combiner(products=...))")
        if self._products & names and m < 2 * t - 1:
            raise NoQuorumError(f"scan {scan_id}: {m} sites answered; the product score(s) "
                                f"{sorted(self._products & names)} need {2 * t - 1} (2t - 1); no verdict")
        opened_from = 2 * t - 1 if cells or self._products & names else t   # points each value is opened from
        if self.require_checked and m <= opened_from:
            raise NoQuorumError(f"scan {scan_id}: {m} sites answered; a checked verdict needs at least "
                                f"{opened_from + 1}")
        scores: dict[str, float] = {}
        for name in sorted(names & self._products):
            scores[name] = decode_value(self._agreed(scan_id, answered, name, 2 * t - 1))
        for name in sorted(names - self._products):
            points = {i: int(p.values[name]) % PRIME for i, p in answered.items()}
            agree, unique = consistent_subset(points, t) if m > t else (set(points), True)
            if len(agree) != m:
                suspects = tuple(sorted(answered[i].site for i in set(points) - agree)) if unique else ()
                who = f"suspects: {list(suspects)}" if suspects else "too many disagree to tell which"
                raise InconsistentResultsError(
                    f"scan {scan_id}: the sites' partial results for score {name!r} are inconsistent ({who}); "
                    "no verdict", suspects)
            scores[name] = decode_value(reconstruct(points, t))
        ok = all(scores[name] >= thr for name, thr in self.accept.items())
        standard: bool | None = None
        moments: dict[str, float] = {}
        if cells:
            total = self._agreed(scan_id, answered, cellcheck.SUM, t)
            squares = self._agreed(scan_id, answered, cellcheck.SUMSQ, 2 * t - 1)
            standard, mean, var = cellcheck.standardised(total, squares, first.n_features - N_STATS)
            moments = {"cells_mean": mean, "cells_var": var}
            ok = ok and standard
        return Verdict(scan_id, scores, "original" if ok else "copy",
                       tuple(sorted(p.site for p in answered.values())), m > opened_from, first.serial, standard,
                       moments)

    @staticmethod
    def _agreed(scan_id: str, answered: Mapping[int, PartialResult], name: str, degree_plus_one: int) -> int:
        """The value at 0 of `name`'s points (polynomial of degree < degree_plus_one), cross-checked when more
        points than needed are there."""
        points = {i: int(p.values[name]) % PRIME for i, p in answered.items()}
        if len(points) > degree_plus_one:
            agree, unique = consistent_subset(points, degree_plus_one)
            if len(agree) != len(points):
                suspects = tuple(sorted(answered[i].site for i in set(points) - agree)) if unique else ()
                raise InconsistentResultsError(f"scan {scan_id}: the sites' {name!r} values are inconsistent "
                                               f"(suspects: {list(suspects)}); no verdict", suspects)
        return reconstruct(points, degree_plus_one)


def verify_distributed(features: np.ndarray, serial: str, sites: Sequence[VerificationSite], combiner: Combiner,
                       *, available: set[str] | None = None) -> Verdict:
    """The whole flow in one process (simulation): device -> available sites -> combiner."""
    request = make_request(features, serial, [s.info for s in sites], combiner.threshold)
    answers = [s.answer(request) for s in sites if available is None or s.name in available]
    return combiner.combine(request.scan_id, answers, serial=serial)
