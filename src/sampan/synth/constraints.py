"""Row constraints such as ``loan_amount <= 10 * monthly_revenue`` or ``balance >= 0``.

A constraint is a small expression over column names, parsed with Python's ``ast`` and evaluated on
NumPy columns by a whitelist interpreter (never ``eval``): numbers and strings, + - * / ** and unary
minus, ``abs``/``min``/``max``, comparisons (chained too), ``in`` / ``not in`` a list of literals, and
``and`` / ``or`` / ``not``. Categorical columns may only be compared with strings.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from sampan.errors import ConfigError
from sampan.synth.schema import SynthSchema

__all__ = ["Constraint", "ConstraintError", "parse_constraint"]


class ConstraintError(ConfigError):
    """A constraint that cannot be parsed or evaluated; the message quotes it."""


_BINOPS: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
    ast.Pow: operator.pow,
}
_CMPOPS: dict[type, Callable[[Any, Any], Any]] = {
    ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt, ast.GtE: operator.ge,
    ast.Eq: operator.eq, ast.NotEq: operator.ne,
}
_FUNCS: dict[str, Callable[..., Any]] = {"abs": np.abs, "min": np.minimum, "max": np.maximum}


@dataclass(frozen=True)
class Constraint:
    """A parsed row predicate; ``holds(table)`` is a boolean mask."""

    text: str
    columns: tuple[str, ...]
    _tree: ast.Expression

    def holds(self, table: Mapping[str, np.ndarray]) -> np.ndarray:
        n = len(next(iter(table.values())))
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            value = _Evaluator(self.text, table).visit(self._tree.body)
        mask = np.asarray(value)
        if mask.dtype != bool:
            raise ConstraintError(f"constraint '{self.text}' is not a comparison (it gives {mask.dtype} values)")
        return np.broadcast_to(mask, (n,)).copy()

    def __str__(self) -> str:
        return self.text


class _Evaluator(ast.NodeVisitor):
    def __init__(self, text: str, table: Mapping[str, np.ndarray]) -> None:
        self.text = text
        self.table = table

    def fail(self, what: str) -> ConstraintError:
        return ConstraintError(f"constraint '{self.text}': {what}")

    def generic_visit(self, node: ast.AST) -> Any:
        raise self.fail(f"'{ast.unparse(node)}' is not allowed (use columns, numbers, arithmetic, comparisons, "
                        "and/or/not, in [...], abs/min/max)")

    def visit_Name(self, node: ast.Name) -> Any:
        if node.id not in self.table:
            raise self.fail(f"unknown column '{node.id}' (columns: {list(self.table)})")
        return self.table[node.id]

    def visit_Constant(self, node: ast.Constant) -> Any:
        if isinstance(node.value, bool) or not isinstance(node.value, (int, float, str)):
            raise self.fail(f"literal {node.value!r} is not a number or a string")
        return node.value

    def _numeric(self, value: Any, node: ast.AST) -> Any:
        arr = np.asarray(value)
        if arr.dtype.kind not in "fiub":
            raise self.fail(f"'{ast.unparse(node)}' is not numeric")
        return value

    def visit_BinOp(self, node: ast.BinOp) -> Any:
        op = _BINOPS.get(type(node.op))
        if op is None:
            raise self.fail(f"operator in '{ast.unparse(node)}' is not allowed")
        return op(self._numeric(self.visit(node.left), node.left), self._numeric(self.visit(node.right), node.right))

    def visit_UnaryOp(self, node: ast.UnaryOp) -> Any:
        value = self.visit(node.operand)
        if isinstance(node.op, ast.Not):
            return ~np.asarray(value, dtype=bool)
        if isinstance(node.op, ast.USub):
            return -self._numeric(value, node.operand)
        if isinstance(node.op, ast.UAdd):
            return self._numeric(value, node.operand)
        raise self.fail(f"operator in '{ast.unparse(node)}' is not allowed")

    def visit_BoolOp(self, node: ast.BoolOp) -> Any:
        values = [np.asarray(self.visit(v), dtype=bool) for v in node.values]
        combine = np.logical_and if isinstance(node.op, ast.And) else np.logical_or
        out = values[0]
        for v in values[1:]:
            out = combine(out, v)
        return out

    def visit_Call(self, node: ast.Call) -> Any:
        if not isinstance(node.func, ast.Name) or node.func.id not in _FUNCS or node.keywords:
            raise self.fail(f"call '{ast.unparse(node)}' is not allowed (only abs, min, max)")
        args = [self._numeric(self.visit(a), a) for a in node.args]
        if node.func.id == "abs" and len(args) != 1 or node.func.id != "abs" and len(args) != 2:
            raise self.fail(f"'{ast.unparse(node)}': abs takes one argument, min/max two")
        return _FUNCS[node.func.id](*args)

    def _literal_list(self, node: ast.AST) -> list[Any]:
        if not isinstance(node, (ast.List, ast.Tuple, ast.Set)):
            raise self.fail(f"'in' needs a list of literals, got '{ast.unparse(node)}'")
        return [self.visit_Constant(e) if isinstance(e, ast.Constant) else self.generic_visit(e) for e in node.elts]

    def visit_Compare(self, node: ast.Compare) -> Any:
        left_node, left = node.left, self.visit(node.left)
        result = None
        for op, right_node in zip(node.ops, node.comparators, strict=False):
            if isinstance(op, (ast.In, ast.NotIn)):
                items = self._literal_list(right_node)
                arr = np.asarray(left)
                if arr.dtype.kind in "OUS":
                    items = [str(i) for i in items]
                part = np.isin(arr, np.asarray(items, dtype=arr.dtype if arr.dtype.kind == "O" else None))
                part = ~part if isinstance(op, ast.NotIn) else part
                right = None
            else:
                right = self.visit(right_node)
                lt, rt = np.asarray(left), np.asarray(right)
                if (lt.dtype.kind in "OUS") != (rt.dtype.kind in "OUS"):
                    raise self.fail(f"'{ast.unparse(left_node)}' and '{ast.unparse(right_node)}' are not both "
                                    "numeric or both text")
                if lt.dtype.kind in "OUS" and not isinstance(op, (ast.Eq, ast.NotEq)):
                    raise self.fail("text (categorical) values only support ==, !=, in, not in")
                part = np.asarray(_CMPOPS[type(op)](left, right), dtype=bool)
            result = part if result is None else result & part
            left_node, left = right_node, right
        return result


def parse_constraint(text: str, schema: SynthSchema | None = None) -> Constraint:
    """Parse ``text``; with a schema, unknown columns and text/number mix-ups are reported up front."""
    if not isinstance(text, str) or not text.strip():
        raise ConstraintError("a constraint must be a non-empty expression, e.g. 'balance >= 0'")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise ConstraintError(f"constraint '{text}': not a valid expression ({exc.msg})") from None
    names = tuple(sorted({n.id for n in ast.walk(tree) if isinstance(n, ast.Name)} - set(_FUNCS)))
    constraint = Constraint(text.strip(), names, tree)
    if schema is not None:
        unknown = [n for n in names if n not in schema.names]
        if unknown:
            raise ConstraintError(f"constraint '{text}': unknown column(s) {unknown} (columns: {schema.names})")
        probe: dict[str, np.ndarray] = {}
        for spec in schema.columns:
            if spec.kind == "categorical":
                probe[spec.name] = np.asarray([spec.categories[0]], dtype=object)  # type: ignore[index]
            else:
                probe[spec.name] = np.asarray([spec.bounds[0]], dtype=np.float64)  # type: ignore[index]
        constraint.holds(probe)  # type-checks the expression on a one-row probe
    return constraint
