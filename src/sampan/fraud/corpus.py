"""Per-bank document corpora for the federated experiments (issue 18): non-IID kinds, fake sources and devices.

Each simulated bank receives its own mix of document kinds and fake sources and captures them with its own device,
so the banks' data differ as real banks' would. `bank_corpus` is deterministic for a seed; `PROVENANCE` is the
paragraph printed under every table made from these data.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from sampan.fraud.capture import DEVICES, CaptureProfile, capture
from sampan.fraud.documents import DocImage, FraudDataError, check_kind, render_document
from sampan.fraud.generators import FAKE_SOURCES, make_fake

__all__ = ["BankProfile", "DEFAULT_BANKS", "bank_corpus", "PROVENANCE"]


@dataclass(frozen=True)
class BankProfile:
    """One bank: weights of document kinds and of fake sources (normalised when drawn), and its capture device."""

    name: str
    kinds: dict[str, float]
    sources: dict[str, float]
    capture: CaptureProfile
    size: tuple[int, int] = field(default=(256, 256))

    def __post_init__(self) -> None:
        """Refuse unknown kinds or sources and weights that do not sum to a positive number, naming the field."""
        for kind in self.kinds:
            check_kind(kind)
        for source in self.sources:
            if source not in FAKE_SOURCES:
                raise FraudDataError(f"bank {self.name!r}: fake source {source!r} is not one of "
                                     f"{', '.join(FAKE_SOURCES)} (field 'sources')")
        for label, mix in (("kinds", self.kinds), ("sources", self.sources)):
            if any(v < 0 for v in mix.values()) or sum(mix.values()) <= 0:
                raise FraudDataError(f"bank {self.name!r}: the weights in {label} must be >= 0 and sum to more "
                                     f"than 0 (field {label!r})")


DEFAULT_BANKS: tuple[BankProfile, ...] = (
    BankProfile("bank_a", {"id_card": 0.7, "business": 0.3}, {"autoencoder": 0.5, "upsampler": 0.3, "inpaint": 0.2},
                DEVICES["flagship_phone"]),
    BankProfile("bank_b", {"id_card": 0.3, "business": 0.7}, {"autoencoder": 0.2, "upsampler": 0.5, "inpaint": 0.3},
                DEVICES["flatbed_scanner"]),
    BankProfile("bank_c", {"id_card": 0.5, "business": 0.5}, {"autoencoder": 0.3, "upsampler": 0.2, "inpaint": 0.5},
                DEVICES["budget_phone"]),
    BankProfile("bank_d", {"id_card": 0.8, "business": 0.2}, {"autoencoder": 0.4, "upsampler": 0.4, "inpaint": 0.2},
                DEVICES["messaging_app"]),
)

PROVENANCE: str = (
    "Data provenance: every image was made on this machine; no public or customer document was used. 'Real' "
    "documents are procedural renders (Pillow, its bundled font): ID cards and business documents with a tinted "
    "background, guilloche curves, random names, numbers and dates, a drawn face (ID card) or a company seal and "
    "signature (business), a logo, a border, and print texture (ink spread, paper grain, pixel noise). Fakes come "
    "from three local generators: 'autoencoder' = the reconstruction of a whole real render by an 8x8-tile "
    "autoencoder (192-128-32-128-192) trained here with Adam for 400 steps on tiles of 8 real renders; 'upsampler' "
    "= the render down-sampled 2x and decoded by a tiny untrained random decoder (near-bilinear 4x4 transposed "
    "convolution, 3x3 convolution); 'inpaint' = a real render whose photo region or one text field is replaced by "
    "another render's region passed through a 4x4-tile autoencoder (48-64-16-64-48, 400 Adam steps) trained here on"
    " photo and text crops of 8 other renders, blended at the border (only that region is labelled manipulated). "
    "Every fake is made from its own fresh render (never from a document of the real set), with the same generators"
    " for every bank (fixed weights, generator_seed 0 unless stated), and its per-channel mean and standard "
    "deviation are matched to that render. Real and fake alike then pass the same phone-capture chain of the bank's"
    " device (perspective warp applied to image and mask alike, resize, Gaussian blur, brightness, sensor noise, "
    "JPEG quality 30-100); banks differ in document kinds, fake sources and device (non-IID). These are local "
    "proxies: figures on them say nothing about commercial generators or real print-and-recapture."
)


def _draw_from(mix: dict[str, float], rng: np.random.Generator) -> str:
    names = [k for k in mix if mix[k] > 0]
    weights = np.array([mix[k] for k in names], np.float64)
    return names[int(rng.choice(len(names), p=weights / weights.sum()))]


def bank_corpus(profile: BankProfile, n_real: int, n_fake: int, seed: int, *,
                generator_seed: int = 0) -> list[DocImage]:
    """n_real real and n_fake fake documents of one bank, captured by its device, in a seeded random order.

    `generator_seed` picks the trained generators (the same for every bank by default: fraudsters share tools);
    another value gives generators of the same design with other weights, for a harder generalisation test.
    """
    if n_real < 0 or n_fake < 0:
        raise FraudDataError(f"bank {profile.name!r}: n_real and n_fake must be >= 0, got {n_real}, {n_fake} "
                             "(field 'n_real'/'n_fake')")
    if seed < 0 or generator_seed < 0:
        raise FraudDataError(f"bank {profile.name!r}: seed and generator_seed must be >= 0, got {seed}, "
                             f"{generator_seed} (field 'seed')")
    rng = np.random.default_rng([seed, *profile.name.encode()])
    h, w = profile.size
    docs: list[DocImage] = []
    for i in range(n_real + n_fake):
        kind = _draw_from(profile.kinds, rng)
        image = render_document(kind, rng, (h, w))
        if i < n_real:
            doc = DocImage(image, 0, "real", kind, np.zeros((h, w), bool), "none", "")
        else:
            source = _draw_from(profile.sources, rng)
            fake, mask = make_fake(source, image, rng, kind, generator_seed=generator_seed)
            doc = DocImage(fake, 1, source, kind, mask, "none", "")
        docs.append(capture(doc, profile.capture, rng))
    order = rng.permutation(len(docs))
    return [dataclasses.replace(docs[j], doc_id=f"{profile.name}-{k:05d}") for k, j in enumerate(order)]
