"""The fitted synthesiser: public domain facts, noisy-marginal tables, tree structure and its receipt.

A `SynthModel` holds nothing derived from records except through DP releases: the schema (declared by the
owner, or released under DP by `sampan.synth.domain`), encoders (public grids,
DP quantile bins, noisy 1-way weights), the selected tree, the label distribution and conditional
tables fitted from noisy cliques, and the privacy receipt. It therefore can be shared and sampled from
any number of times without further privacy cost. It is saved as ``model.json`` (metadata, structure,
receipt) plus ``tables.npz`` (float/int arrays only, loaded with ``allow_pickle=False``).
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sampan.errors import DataError
from sampan.files import atomic_directory
from sampan.synth.encoders import CategoryGroups, Encoder, encoder_from_state, encoder_state
from sampan.synth.schema import SynthSchema

__all__ = ["MODEL_FORMAT", "ModelError", "SynthModel"]

MODEL_FORMAT = "sampan.synth.model"
MODEL_VERSION = 1
_JSON, _NPZ = "model.json", "tables.npz"


class ModelError(DataError):
    """A model folder that cannot be read; names the folder and what is wrong."""


@dataclass
class SynthModel:
    """Everything the sampler uses. ``parents[f]`` is None for tree roots; ``coarsen[f]`` maps the
    parent's bins to the groups ``conditionals[f]`` is indexed by."""

    schema: SynthSchema
    encoders: dict[str, Encoder]  # features (not the label)
    label_encoder: CategoryGroups | None
    order: list[str]
    parents: dict[str, str | None]
    coarsen: dict[str, np.ndarray | None]
    p_label: np.ndarray
    conditionals: dict[str, np.ndarray]
    n_hat: float
    receipt: dict[str, Any] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def features(self) -> list[str]:
        return list(self.order)

    @property
    def edges(self) -> list[tuple[str, str]]:
        return [(p, f) for f, p in self.parents.items() if p is not None]

    def node_marginals(self) -> dict[str, np.ndarray]:
        """P(bin of feature | label) for every feature, by propagation down the tree: (L, bins)."""
        out: dict[str, np.ndarray] = {}
        for name in self.order:
            cond = self.conditionals[name]
            parent = self.parents[name]
            if parent is None:
                out[name] = cond[:, 0, :]
                continue
            groups = np.zeros((cond.shape[0], cond.shape[1]))
            coarsen = self.coarsen[name]
            assert coarsen is not None, f"child node '{name}' has no coarsening map"
            np.add.at(groups.T, coarsen, out[parent].T)
            out[name] = np.einsum("lg,lgk->lk", groups, cond)
        return out

    # -- persistence ---------------------------------------------------------------------------------------

    def _state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        arrays: dict[str, np.ndarray] = {"p_label": self.p_label}
        encoders: dict[str, Any] = {}
        for name, enc in self.encoders.items():
            meta, arrs = encoder_state(enc)
            encoders[name] = meta
            arrays.update({f"enc/{name}/{k}": v for k, v in arrs.items()})
        if self.label_encoder is not None:
            arrays["label/group_of"] = self.label_encoder.group_of
            arrays["label/weights"] = self.label_encoder.weights
        for name in self.order:
            arrays[f"cond/{name}"] = self.conditionals[name]
            if self.coarsen[name] is not None:
                arrays[f"coarsen/{name}"] = self.coarsen[name]  # type: ignore[assignment]
        meta = {
            "format": MODEL_FORMAT,
            "version": MODEL_VERSION,
            "schema": self.schema.to_dict(),
            "order": self.order,
            "parents": self.parents,
            "encoders": encoders,
            "n_hat": self.n_hat,
            "info": self.info,
            "receipt": self.receipt,
        }
        return meta, arrays

    def to_dict(self) -> dict[str, Any]:
        """The JSON part of the saved model (for inspection)."""
        return self._state()[0]

    def arrays(self) -> dict[str, np.ndarray]:
        """The array part of the saved model (for inspection)."""
        return self._state()[1]

    def save(self, path: str | Path) -> Path:
        """Write ``model.json`` + ``tables.npz`` into ``path`` atomically (the whole folder at once)."""
        meta, arrays = self._state()
        for key, value in arrays.items():
            if value.dtype == object:
                raise ModelError(f"array '{key}' has dtype object; models hold numbers only")
        buffer = io.BytesIO()
        np.savez_compressed(buffer, allow_pickle=False, **arrays)
        text = json.dumps(meta, indent=1, allow_nan=False)
        with atomic_directory(path, replaceable=frozenset({_JSON, _NPZ})) as staging:
            (staging / _JSON).write_text(text, encoding="utf-8")
            (staging / _NPZ).write_bytes(buffer.getvalue())
        return Path(path)

    @classmethod
    def load(cls, path: str | Path) -> SynthModel:
        folder = Path(path)
        try:
            meta = json.loads((folder / _JSON).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ModelError(f"'{folder}' is not a synthesiser model folder (no {_JSON})") from None
        except json.JSONDecodeError as exc:
            raise ModelError(f"'{folder / _JSON}' is not valid JSON: {exc}") from None
        if not isinstance(meta, dict) or meta.get("format") != MODEL_FORMAT:
            raise ModelError(f"'{folder / _JSON}' is not a {MODEL_FORMAT} document")
        if meta.get("version") != MODEL_VERSION:
            raise ModelError(f"'{folder / _JSON}': unsupported version {meta.get('version')!r}")
        try:
            with np.load(folder / _NPZ, allow_pickle=False) as npz:
                arrays = {k: npz[k] for k in npz.files}
        except FileNotFoundError:
            raise ModelError(f"'{folder}' has no {_NPZ}") from None
        except (ValueError, OSError, zipfile.BadZipFile) as exc:
            raise ModelError(f"'{folder / _NPZ}' is damaged or not a model table file ({type(exc).__name__})") from None
        try:
            return cls._from_state(meta, arrays)
        except KeyError as exc:
            raise ModelError(f"'{folder}': missing entry {exc} in the model files") from None

    @classmethod
    def _from_state(cls, meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> SynthModel:
        schema = SynthSchema.from_dict(meta["schema"])
        encoders: dict[str, Encoder] = {}
        for name, enc_meta in meta["encoders"].items():
            prefix = f"enc/{name}/"
            own = {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}
            encoders[name] = encoder_from_state(schema.column(name), enc_meta, own)
        label_encoder = None
        if schema.label is not None:
            label_encoder = CategoryGroups(schema.column(schema.label), arrays["label/group_of"].astype(np.int64),
                                           arrays["label/weights"].astype(np.float64))
        order = list(meta["order"])
        return cls(
            schema=schema,
            encoders=encoders,
            label_encoder=label_encoder,
            order=order,
            parents={k: v for k, v in meta["parents"].items()},
            coarsen={n: (arrays[f"coarsen/{n}"].astype(np.int64) if f"coarsen/{n}" in arrays else None) for n in order},
            p_label=arrays["p_label"].astype(np.float64),
            conditionals={n: arrays[f"cond/{n}"].astype(np.float64) for n in order},
            n_hat=float(meta["n_hat"]),
            receipt=dict(meta.get("receipt", {})),
            info=dict(meta.get("info", {})),
        )
