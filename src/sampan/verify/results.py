"""The result of one evaluation as data: `Evaluation` (target, manifest, outcomes) and its JSON form.

The JSON is the contract between the runner (which fills it), the reports (which render it) and the
portal of issue 17 (which stores and compares it): versioned by `SCHEMA` ("sampan.verify.v1"), plain
JSON types only, and `from_json` checks every field so a hand-edited or foreign file fails with one
line naming the field instead of a traceback somewhere in a renderer.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

from sampan.errors import ConfigError
from sampan.files import atomic_write_text

__all__ = [
    "CATEGORIES",
    "SCHEMA",
    "VERDICTS",
    "Category",
    "Evaluation",
    "Outcome",
    "Plot",
    "TargetInfo",
    "Threshold",
    "Verdict",
    "load_evaluation",
    "save_evaluation",
]

SCHEMA = "sampan.verify.v1"
Verdict = Literal["pass", "fail", "skip", "error"]
Category = Literal["functional", "performance", "security"]
VERDICTS: tuple[Verdict, ...] = ("pass", "fail", "skip", "error")
CATEGORIES: tuple[Category, ...] = ("functional", "performance", "security")
PlotKind = Literal["line", "roc", "bar"]
_PLOT_KINDS = ("line", "roc", "bar")
_MAX_BYTES = 64 * 1024 * 1024  # a results file larger than this is not one the runner wrote


def _jsonable(value: Any) -> Any:
    """Evidence as plain JSON: numpy scalars/arrays become numbers/lists, NaN/inf become None, keys str."""
    if value is None or isinstance(value, (bool, str, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_jsonable(v) for v in value]
    tolist = getattr(value, "tolist", None)  # numpy arrays and scalars, without importing numpy
    if callable(tolist):
        return _jsonable(tolist())
    return str(value)


@dataclass(frozen=True)
class Threshold:
    """A pass rule's threshold, fixed before any platform ran: its value, unit and where it comes from."""

    rule: str  # in words: "final AUC >= pooled AUC - margin"
    value: float | str | None = None
    unit: str = ""
    source: str = ""  # "task spec", "pooled baseline", "issue 16", "CAICT method", ...


@dataclass(frozen=True)
class Plot:
    """A chart for the report: named series of (x, y) points (bar: one point per category, x ignored)."""

    kind: PlotKind
    title: str
    series: dict[str, list[tuple[float, float]]]
    x_label: str = ""
    y_label: str = ""

    def __post_init__(self) -> None:  # floats throughout, so a JSON round trip gives the same file
        clean = {str(k): [(float(x), float(y)) for x, y in pts] for k, pts in self.series.items()}
        object.__setattr__(self, "series", clean)


@dataclass(frozen=True)
class Outcome:
    """One test's result. `figures` are the measured numbers; `evidence` anything a reader may check."""

    id: str
    title: str
    category: Category
    verdict: Verdict
    message: str = ""
    threshold: Threshold | None = None
    figures: dict[str, float | None] = field(default_factory=dict)
    evidence: dict[str, Any] = field(default_factory=dict)
    plots: list[Plot] = field(default_factory=list)
    seconds: float = 0.0
    claim: str | None = None  # the /info claim this test checks ("secure_aggregation", "dp", "mtls", ...)
    pass_rule: str = ""  # the catalogue's pass rule in words (the threshold's rule says the number)
    inputs: str = ""  # the catalogue's inputs in words (which data, which job)

    def __post_init__(self) -> None:
        figures = {str(k): None if v is None else float(v) for k, v in self.figures.items()}
        object.__setattr__(self, "figures", figures)
        object.__setattr__(self, "seconds", float(self.seconds))


@dataclass(frozen=True)
class TargetInfo:
    """What the platform said about itself (`GET /info`) and where it was reached."""

    url: str
    platform: str = ""
    platform_version: str = ""
    api_version: str = ""
    capabilities: list[str] = field(default_factory=list)
    claims: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Evaluation:
    """A whole evaluation: the target, profile, manifest (versions, seeds, drawn columns) and outcomes."""

    target: TargetInfo
    profile: str
    started: str  # ISO 8601 UTC
    finished: str
    outcomes: list[Outcome] = field(default_factory=list)
    manifest: dict[str, Any] = field(default_factory=dict)
    schema: str = SCHEMA

    def counts(self) -> dict[str, int]:
        """Outcomes per verdict, every verdict present (0 when none)."""
        out: dict[str, int] = dict.fromkeys(VERDICTS, 0)
        for outcome in self.outcomes:
            out[outcome.verdict] += 1
        return out

    def by_category(self) -> dict[str, list[Outcome]]:
        """Outcomes grouped by category in catalogue order (functional, performance, security)."""
        return {c: [o for o in self.outcomes if o.category == c] for c in CATEGORIES
                if any(o.category == c for o in self.outcomes)}

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types only (NaN and inf written as null)."""
        return cast(dict[str, Any], _jsonable(asdict(self)))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False, allow_nan=False) + "\n"

    @classmethod
    def from_dict(cls, data: Any) -> Evaluation:
        return _evaluation(data)

    @classmethod
    def from_json(cls, text: str, *, source: str = "results") -> Evaluation:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{source}: not JSON ({exc.msg} at line {exc.lineno})") from None
        try:
            return _evaluation(data)
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc}") from None


# ---- parsing with field-named errors -------------------------------------------------------------------------


def _obj(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{where} must be an object")
    return value


def _str(data: dict[str, Any], key: str, where: str, *, default: str | None = None) -> str:
    value = data.get(key, default)
    if not isinstance(value, str):
        raise ConfigError(f"{where}.{key} must be a string")
    return value


def _num(value: Any, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{where} must be a number or null")
    return float(value)


def _threshold(value: Any, where: str) -> Threshold | None:
    if value is None:
        return None
    data = _obj(value, where)
    raw = data.get("value")
    if raw is not None and (isinstance(raw, bool) or not isinstance(raw, (int, float, str))):
        raise ConfigError(f"{where}.value must be a number, a string or null")
    return Threshold(rule=_str(data, "rule", where), value=raw, unit=_str(data, "unit", where, default=""),
                     source=_str(data, "source", where, default=""))


def _plot(value: Any, where: str) -> Plot:
    data = _obj(value, where)
    kind = data.get("kind")
    if kind not in _PLOT_KINDS:
        raise ConfigError(f"{where}.kind must be one of {', '.join(_PLOT_KINDS)}")
    series: dict[str, list[tuple[float, float]]] = {}
    for name, points in _obj(data.get("series", {}), f"{where}.series").items():
        if not isinstance(points, list):
            raise ConfigError(f"{where}.series.{name} must be a list of [x, y] pairs")
        pairs = []
        for i, point in enumerate(points):
            if not isinstance(point, (list, tuple)) or len(point) != 2:
                raise ConfigError(f"{where}.series.{name}[{i}] must be an [x, y] pair")
            x, y = (_num(p, f"{where}.series.{name}[{i}]") for p in point)
            pairs.append((math.nan if x is None else x, math.nan if y is None else y))
        series[str(name)] = pairs
    return Plot(kind=cast(PlotKind, kind), title=_str(data, "title", where, default=""), series=series,
                x_label=_str(data, "x_label", where, default=""), y_label=_str(data, "y_label", where, default=""))


def _outcome(value: Any, where: str) -> Outcome:
    data = _obj(value, where)
    category, verdict = data.get("category"), data.get("verdict")
    if category not in CATEGORIES:
        raise ConfigError(f"{where}.category must be one of {', '.join(CATEGORIES)}")
    if verdict not in VERDICTS:
        raise ConfigError(f"{where}.verdict must be one of {', '.join(VERDICTS)}")
    figures = {str(k): _num(v, f"{where}.figures.{k}")
               for k, v in _obj(data.get("figures", {}), f"{where}.figures").items()}
    plots_raw = data.get("plots", [])
    if not isinstance(plots_raw, list):
        raise ConfigError(f"{where}.plots must be a list")
    claim = data.get("claim")
    if claim is not None and not isinstance(claim, str):
        raise ConfigError(f"{where}.claim must be a string or null")
    seconds = _num(data.get("seconds", 0.0), f"{where}.seconds")
    return Outcome(
        id=_str(data, "id", where), title=_str(data, "title", where, default=""),
        category=cast(Category, category), verdict=cast(Verdict, verdict),
        message=_str(data, "message", where, default=""),
        threshold=_threshold(data.get("threshold"), f"{where}.threshold"), figures=figures,
        evidence=_obj(data.get("evidence", {}), f"{where}.evidence"),
        plots=[_plot(p, f"{where}.plots[{i}]") for i, p in enumerate(plots_raw)],
        seconds=seconds or 0.0, claim=claim, pass_rule=_str(data, "pass_rule", where, default=""),
        inputs=_str(data, "inputs", where, default=""),
    )


def _target(value: Any) -> TargetInfo:
    data = _obj(value, "target")
    caps = data.get("capabilities", [])
    if not isinstance(caps, list) or not all(isinstance(c, str) for c in caps):
        raise ConfigError("target.capabilities must be a list of strings")
    return TargetInfo(url=_str(data, "url", "target"), platform=_str(data, "platform", "target", default=""),
                      platform_version=_str(data, "platform_version", "target", default=""),
                      api_version=_str(data, "api_version", "target", default=""), capabilities=list(caps),
                      claims=_obj(data.get("claims", {}), "target.claims"))


def _evaluation(value: Any) -> Evaluation:
    data = _obj(value, "the results")
    schema = data.get("schema")
    if schema != SCHEMA:
        raise ConfigError(f"schema is {schema!r}, expected {SCHEMA!r} (not a sampan verify results file, "
                          "or one from another version)")
    outcomes = data.get("outcomes", [])
    if not isinstance(outcomes, list):
        raise ConfigError("outcomes must be a list")
    return Evaluation(
        target=_target(data.get("target")), profile=_str(data, "profile", "evaluation"),
        started=_str(data, "started", "evaluation", default=""),
        finished=_str(data, "finished", "evaluation", default=""),
        outcomes=[_outcome(o, f"outcomes[{i}]") for i, o in enumerate(outcomes)],
        manifest=_obj(data.get("manifest", {}), "manifest"),
    )


def save_evaluation(evaluation: Evaluation, path: str | Path) -> Path:
    """Write results.json atomically."""
    return atomic_write_text(path, evaluation.to_json())


def load_evaluation(path: str | Path) -> Evaluation:
    """Read a results.json; a missing, huge or malformed file is one ConfigError naming it."""
    target = Path(path)
    try:
        if target.stat().st_size > _MAX_BYTES:
            raise ConfigError(f"{target}: larger than {_MAX_BYTES // (1024 * 1024)} MiB; not a results file")
        text = target.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{target}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{target}: cannot read ({exc})") from None
    return Evaluation.from_json(text, source=str(target))
