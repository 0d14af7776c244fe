"""ONNX export of a horizontal LR, MLP or GBDT model, built from its ``sampan-model`` document.

Why: many decision engines run ONNX. The graph takes the encoded feature matrix (the document's
``encoding.features`` order: one-hot categories expanded, missing values as NaN) as ``features``,
tensor(double) [N, F], and returns ``pd``, tensor(double) [N, 1]. Inside: imputation (Where/IsNaN),
standardisation (Sub/Div), then the model — MatMul/Add (logistic), MatMul/Add/Relu layers (MLP), or an
``ai.onnx.ml`` TreeEnsembleRegressor with double thresholds and each split's missing direction (GBDT) —
and a Sigmoid. Double precision throughout, except the tree ensemble's summed output, which that operator
returns as float32 (PDs then agree to about 1e-7; LR and MLP to rounding).

`onnx` is an optional dependency (extra ``onnx``), imported only inside `to_onnx`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from sampan.errors import ConfigError

__all__ = ["to_onnx"]

_ML_OPSET = 3
_OPSET = 17


def _array(values: Any) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)


def _trees(helper: Any, part: Mapping[str, Any]) -> Any:
    """A TreeEnsembleRegressor node: one target (the raw score), base_score as the base value."""
    node_tree, node_id, feature, mode, value, true_id, false_id, missing = ([] for _ in range(8))
    leaf_tree, leaf_node, leaf_weight = [], [], []
    for t, tree in enumerate(part["trees"]):
        for n, left in enumerate(tree["left"]):
            node_tree.append(t)
            node_id.append(n)
            leaf = left < 0
            feature.append(0 if leaf else int(tree["feature"][n]))
            mode.append("LEAF" if leaf else "BRANCH_LEQ")
            value.append(0.0 if leaf else float(tree["threshold"][n]))
            true_id.append(0 if leaf else int(left))
            false_id.append(0 if leaf else int(tree["right"][n]))
            missing.append(0 if leaf else int(bool(tree["missing_left"][n])))
            if leaf:
                leaf_tree.append(t)
                leaf_node.append(n)
                leaf_weight.append(float(tree["value"][n]))
    return helper.make_node(
        "TreeEnsembleRegressor", ["x"], ["raw_float"], domain="ai.onnx.ml", n_targets=1, aggregate_function="SUM",
        post_transform="NONE", nodes_treeids=node_tree, nodes_nodeids=node_id, nodes_featureids=feature,
        nodes_modes=mode, nodes_values_as_tensor=helper.make_tensor("v", 11, [len(value)], value),
        nodes_truenodeids=true_id, nodes_falsenodeids=false_id, nodes_missing_value_tracks_true=missing,
        target_treeids=leaf_tree, target_nodeids=leaf_node, target_ids=[0] * len(leaf_tree),
        target_weights_as_tensor=helper.make_tensor("w", 11, [len(leaf_weight)], leaf_weight),
        base_values_as_tensor=helper.make_tensor("b", 11, [1], [float(part["base_score"])]))


def to_onnx(document: Mapping[str, Any]) -> bytes:
    """The serialised ONNX model of a ``sampan-model`` document (`sampan.models.export.export_document`)."""
    try:
        import onnx
        from onnx import TensorProto, helper, numpy_helper
    except ImportError:
        raise ConfigError("ONNX export needs the optional 'onnx' package: pip install 'sampan[onnx]'") from None
    encoding, part = document["encoding"], document["model"]
    width = len(encoding["features"])
    nodes, inits = [], []

    def const(name: str, value: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(np.asarray(value, dtype=np.float64), name))
        return name

    fill = _array(encoding["impute"])
    has_fill = ~np.isnan(fill)
    current = "features"
    if has_fill.any():
        inits.append(numpy_helper.from_array(has_fill, "has_fill"))
        nodes += [helper.make_node("IsNaN", [current], ["gap"]),
                  helper.make_node("And", ["gap", "has_fill"], ["fill_here"]),
                  helper.make_node("Where", ["fill_here", const("fill", np.where(has_fill, fill, 0.0)), current],
                                   ["imputed"])]
        current = "imputed"
    if encoding.get("standardise"):
        nodes += [helper.make_node("Sub", [current, const("mean", _array(encoding["standardise"]["mean"]))],
                                   ["centred"]),
                  helper.make_node("Div", ["centred", const("scale", _array(encoding["standardise"]["scale"]))],
                                   ["x"])]
    else:
        nodes.append(helper.make_node("Identity", [current], ["x"]))
    if part["kind"] == "gbdt":  # the ensemble's output is float32 (thresholds and input stay double)
        nodes += [_trees(helper, part), helper.make_node("Cast", ["raw_float"], ["raw"], to=TensorProto.DOUBLE)]
    elif part["kind"] == "logistic":
        nodes += [helper.make_node("MatMul", ["x", const("w", _array(part["weights"]).reshape(-1, 1))], ["xw"]),
                  helper.make_node("Add", ["xw", const("c", np.array([float(part["intercept"])]))], ["raw"])]
    else:
        h = "x"
        for k, layer in enumerate(part["layers"]):
            W = np.array([_array(row) for row in layer["weights"]]).reshape(len(layer["weights"]), -1)
            out = "raw" if layer["activation"] == "identity" else f"h{k}"
            nodes += [helper.make_node("MatMul", [h, const(f"W{k}", W)], [f"m{k}"]),
                      helper.make_node("Add", [f"m{k}", const(f"b{k}", _array(layer["bias"]))],
                                       [out if out == "raw" else f"a{k}"])]
            if out != "raw":
                nodes.append(helper.make_node("Relu", [f"a{k}"], [out]))
            h = out
    nodes.append(helper.make_node("Sigmoid", ["raw"], ["pd"]))
    graph = helper.make_graph(
        nodes, f"{document.get('name') or 'model'}", [helper.make_tensor_value_info("features", TensorProto.DOUBLE,
                                                                                    ["N", width])],
        [helper.make_tensor_value_info("pd", TensorProto.DOUBLE, ["N", 1])], inits)
    imports = [helper.make_opsetid("", _OPSET)] + ([helper.make_opsetid("ai.onnx.ml", _ML_OPSET)]
                                                  if part["kind"] == "gbdt" else [])
    model = helper.make_model(graph, opset_imports=imports, producer_name="sampan",
                              doc_string=f"{document['format']} v{document['format_version']} "
                                         f"{document.get('name')} version {document.get('version')}")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return bytes(model.SerializeToString())
