"""The federated-synthesis messages: their kinds and how the public things they carry become arrays + JSON.

Both sides use these codecs, so what the coordinator sends is exactly what a party decodes. Everything
here is public (the schema, fine grids, bin definitions, coarsening maps, baseline tables) or a noisy
release; no codec takes a record.

Kinds (request -> reply):
- ``synth.open``: the schema and the aggregation mode -> nothing (the party builds its measurer);
- ``synth.release``: one release (``op`` label / one_way / clique, its sigma from the charged plan) ->
  ``release`` (plain) or ``masked`` (its SecAgg+ masked-input step), with the party's record of it;
- ``synth.select_tree``: features, baselines, EM epsilon per round -> the chosen edges and the records;
- ``secagg_keys`` / ``secagg_share`` / ``secagg_consistency`` / ``secagg_unmask``: the SecAgg+ steps, the
  same kinds as in horizontal training (`sampan.privacy.secagg`).
Any ``synth.*`` request may carry the bin definitions (``encoders``) set since the party's last request.

Decoding only rebuilds the objects; the party checks each of them against the public schema before it
touches a record (`sampan.synth.request_checks`): it rebuilds a fine grid from the schema and refuses one
that differs, and refuses bins, coarsening maps and baselines that do not cover their public domain exactly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from sampan.synth.discretize import FineGrid
from sampan.synth.encoders import Encoder, encoder_from_state, encoder_state
from sampan.synth.measure import Axis
from sampan.synth.schema import SynthSchema
from sampan.wire.catalogue import Field, MessageSpec

__all__ = ["OPEN", "RELEASE", "SELECT_TREE", "catalogue", "receipt_rows", "decode_axes", "decode_baselines",
           "decode_encoders", "decode_grid", "encode_axes", "encode_baselines", "encode_encoders", "encode_grid"]

OPEN, RELEASE, SELECT_TREE = "synth.open", "synth.release", "synth.select_tree"


def encode_grid(grid: FineGrid) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    return grid.to_dict(), {"grid.edges": np.asarray(grid.edges, np.float64)}


def decode_grid(meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> FineGrid:
    """The grid as sent; a party uses it only through `sampan.synth.request_checks.public_grid` (its own rebuild)."""
    return FineGrid(float(meta["lo"]), float(meta["hi"]), bool(meta["integer"]), bool(meta["values_mode"]),
                    np.asarray(arrays["grid.edges"], np.float64), int(meta["zero_index"]))


def encode_encoders(encoders: Mapping[str, Encoder]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    meta: dict[str, Any] = {}
    arrays: dict[str, np.ndarray] = {}
    for name, encoder in encoders.items():
        meta[name], own = encoder_state(encoder)
        arrays.update({f"enc/{name}/{k}": np.asarray(v) for k, v in own.items()})
    return meta, arrays


def decode_encoders(schema: SynthSchema, meta: Mapping[str, Any],
                    arrays: Mapping[str, np.ndarray]) -> dict[str, Encoder]:
    out = {}
    for name, state in meta.items():
        prefix = f"enc/{name}/"
        out[name] = encoder_from_state(schema.column(name), state,
                                       {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)})
    return out


def encode_axes(axes: Sequence[Axis]) -> tuple[list[str], dict[str, np.ndarray]]:
    names = [name for name, _ in axes]
    return names, {f"coarsen.{i}": np.asarray(c, np.int64) for i, (_, c) in enumerate(axes) if c is not None}


def decode_axes(names: Sequence[str], arrays: Mapping[str, np.ndarray]) -> list[Axis]:
    return [(str(n), np.asarray(arrays[f"coarsen.{i}"], np.int64) if f"coarsen.{i}" in arrays else None)
            for i, n in enumerate(names)]


def encode_baselines(baselines: Mapping[tuple[str, str], np.ndarray]) -> tuple[list[list[str]], dict[str, np.ndarray]]:
    keys = list(baselines)
    return [list(k) for k in keys], {f"baseline.{i}": np.asarray(baselines[k], np.float64) for i, k in enumerate(keys)}


def decode_baselines(keys: Sequence[Sequence[str]],
                     arrays: Mapping[str, np.ndarray]) -> dict[tuple[str, str], np.ndarray]:
    return {(str(a), str(b)): np.asarray(arrays[f"baseline.{i}"], np.float64) for i, (a, b) in enumerate(keys)}


def catalogue(secure: bool) -> list[MessageSpec]:
    """Every synthesis message and field with its protection (the receipt lists these rows)."""
    public = Field("meta.*", "public", what="schema, plan (op, sigma, column, axes), grids, bins, baselines")
    record = Field("meta.release", "public", what="the party's record of its release (noise, charge, cells)")
    if secure:
        release = (Field("arrays.masked", "random", what="the noisy histogram masked by SecAgg+ (1/sqrt(K) noise "
                                                         "share); the coordinator learns only the charged sum"), record)
    else:
        release = (Field("arrays.release", "charged", ("gaussian",), what="noisy histogram (full noise)"), record)
    specs = [MessageSpec(OPEN, "coordinator", (public,)), MessageSpec(RELEASE, "coordinator", (public,)),
             MessageSpec(RELEASE, "party", release),
             MessageSpec(SELECT_TREE, "party", (Field("meta.edges", "charged", ("exponential",),
                                                      what="spanning-tree edges chosen round by round"),
                                                Field("meta.releases", "public", what="the party's EM records")))]
    if secure:
        specs += [MessageSpec(kind, "party", (Field("arrays.*", "random", what="secure-aggregation keys, "
                                                    "signatures, sealed shares, unmask shares"),))
                  for kind in ("secagg_keys", "secagg_share", "secagg_consistency", "secagg_unmask")]
    return specs


def receipt_rows(secure: bool) -> list[dict[str, str]]:
    return [{"sender": spec.sender, "kind": spec.kind, "field": f.name, "protection": f.protection,
             "mechanisms": ", ".join(f.mechanisms), "role": f.role or "", "description": f.describe()}
            for spec in catalogue(secure) for f in spec.fields]
