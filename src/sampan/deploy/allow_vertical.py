"""Per-request checks of a vertical, scoring or serving job at a party agent (called from
`sampan.deploy.allow_requests.check_request`): only the workflow's kinds, only the models and the PSI backend
the job announced, scoring only of the announced model kind and applicants file, and each histogram release
with at least the noise the job announced and `[allow]` requires (reviews R12-VER-1/2/7b/9, R13-SCO-13/15).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sampan.deploy.allow_kinds import MODEL_PREFIXES, SCORING_KINDS, SERVING_KINDS, VERTICAL_KINDS, VERTICAL_NOISE
from sampan.deploy.allow_section import AllowSection, JobRefused

__all__ = ["check_psi_backend", "check_vertical_job", "check_vertical_noise"]


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def check_psi_backend(allow: AllowSection, party: str, job: Mapping[str, Any]) -> None:
    """A vertical job's PSI backend must be one this party listed (`[allow] psi_backends`, default ECDH only):
    RR22 is opt-in at the party, not only the coordinator's choice (review R15-RR22-8)."""
    backend = str((job.get("vertical") or {}).get("psi_backend") or "ecdh")
    if backend not in allow.psi_backends:
        raise JobRefused(party, "psi_backends", f"the job aligns with PSI backend {backend!r}, not one of "
                         f"allow.psi_backends {list(allow.psi_backends)} (list 'rr22' there to opt in)")


def check_vertical_job(party: str, kind: str, meta: Mapping[str, Any], job: Mapping[str, Any]) -> None:
    """A vertical request against the job this party accepted: only the workflow's kinds (a scoring job only
    scoring's), only the models it announced, and each histogram release with at least the noise it announced
    (review R12-VER-1/2/9)."""
    workflow = job.get("workflow")
    allowed = {"scoring": SCORING_KINDS, "serving": SERVING_KINDS}.get(str(workflow), VERTICAL_KINDS)
    if kind not in allowed:
        raise JobRefused(party, "request", f"{kind!r} is not a request of the {workflow} workflow this party accepted")
    if (
        workflow in ("scoring", "serving")
        and kind == "vertical.load_model"
        and job.get("model_run") is not None
        and str(meta.get("model_run")) != str(job["model_run"])
    ):
        raise JobRefused(
            party,
            "request",
            f"vertical.load_model names model run {meta.get('model_run')!r}; the "
            f"scoring job this party accepted announced {job['model_run']!r}",
        )
    if kind in ("score.start", "vgb.score_start", "serve.start") and "applicants_file" in meta and (
        workflow != "scoring" or (
        (meta.get("applicants_file"), meta.get("id_column")) != (job.get("applicants_file"), job.get("id_column")))
    ):  # the bank reads only the file (and column) of the scoring job it accepted (R13-SCO-13: no training job's)
        raise JobRefused(
            party,
            "request",
            f"{kind} names applicants file {meta.get('applicants_file')!r} (column {meta.get('id_column')!r}); "
            f"the scoring job this party accepted announced {job.get('applicants_file')!r} "
            f"(column {job.get('id_column')!r})",
        )
    _check_model_kind(party, kind, meta, job)
    if workflow != "vertical":
        return
    backend = str((job.get("vertical") or {}).get("psi_backend") or "ecdh")
    if kind.startswith("psi.rr22.") and backend != "rr22":
        raise JobRefused(party, "request", f"{kind!r} runs RR22 PSI, which the job this party accepted did not "
                         f"announce (psi_backend {backend!r})")
    models = set((job.get("vertical") or {}).get("models") or ["lr"])
    for model, prefixes in MODEL_PREFIXES.items():
        if model not in models and kind.startswith(prefixes):
            raise JobRefused(
                party,
                "request",
                f"{kind!r} trains the {model} model, which the job this party "
                f"accepted did not announce (models {sorted(models)})",
            )
    announced = set(job.get("protections") or ())
    if kind in ("woe.sum", "woe.finish") and "woe_dp" in announced:
        woe = (job.get("vertical") or {}).get("woe") or {}
        limit = _number(woe.get("dp_epsilon"))
        value = _number(meta.get("dp_epsilon"))
        if value is None or value <= 0 or limit is None or value > limit * (1 + 1e-9):
            raise JobRefused(
                party,
                "job",
                f"this {kind} request carries dp_epsilon={meta.get('dp_epsilon')!r}; the "
                f"job this party accepted announced DP on the WOE counts at epsilon {limit!r} or less",
            )
        delta = _number(meta.get("dp_delta"))
        if meta.get("dp_delta") is not None and (delta is None or delta > float(woe.get("dp_delta") or 1e-5)):
            raise JobRefused(
                party,
                "job",
                f"this {kind} request carries dp_delta={meta.get('dp_delta')!r}, above "
                f"the job's {woe.get('dp_delta', 1e-5)!r}",
            )
    if kind == "vgb.start":  # review R12-VER-7b: the bank grows no more or deeper trees than the job announced
        shape = (job.get("vertical") or {}).get("gbdt") or {}
        params = meta.get("params") or {}
        for key in ("n_trees", "max_depth"):
            value, limit = params.get(key), shape.get(key)
            if limit is None or isinstance(value, bool) or not isinstance(value, int) or value > int(limit):
                raise JobRefused(
                    party,
                    "job",
                    f"this vgb.start request asks for {key}={value!r}; the job this party "
                    f"accepted announced {key}={limit!r} (the run's charge bounds that many node releases)",
                )
    if kind == "vgb.setup" and "gbdt_dp" in announced:
        floor = _number(job.get("gbdt_hist_noise")) or 0.0
        value = _number(meta.get("hist_noise"))
        if value is None or value < floor * (1 - 1e-9) or value <= 0:
            raise JobRefused(
                party,
                "job",
                f"this vgb.setup request carries hist_noise={meta.get('hist_noise')!r}, "
                f"below the {floor} the job this party accepted announced",
            )


_KIND_REQUESTS = {"gbdt": ("vgb.",), "lr": ("score.start", "score.partial", "score.finish"),
                  "scorecard": ("score.start", "score.partial", "score.finish")}


def _check_model_kind(party: str, kind: str, meta: Mapping[str, Any], job: Mapping[str, Any]) -> None:
    """Review R13-SCO-15: a scoring job loads and answers for the model kind it announced only (a GBDT part
    answers routing bits, its feature intervals; a linear part one summed contribution)."""
    announced = job.get("model_kind")
    if job.get("workflow") not in ("scoring", "serving") or announced is None:
        return
    if kind == "vertical.load_model" and str(meta.get("kind")) != str(announced):
        raise JobRefused(party, "job", f"vertical.load_model asks for the {meta.get('kind')!r} part; the scoring job "
                         f"this party accepted announced {announced!r}")
    scoring = kind.startswith("vgb.") or kind in _KIND_REQUESTS["lr"]
    if scoring and not kind.startswith(_KIND_REQUESTS.get(str(announced), ())):
        raise JobRefused(party, "job", f"{kind!r} scores another model kind than the {announced!r} the scoring job "
                         "this party accepted announced")


def check_vertical_noise(allow: AllowSection, party: str, kind: str, meta: Mapping[str, Any]) -> None:
    protocol = "woe_dp" if kind.startswith("woe.") else "gbdt_dp"
    value = meta.get(VERTICAL_NOISE[kind])
    noised = isinstance(value, (int, float)) and not isinstance(value, bool) and float(value) > 0
    if not noised and (protocol in allow.require or "dp" in allow.require):
        raise JobRefused(
            party,
            "require",
            f"this {kind} request carries no noise ({VERTICAL_NOISE[kind]}="
            f"{value!r}) but this party requires {protocol if protocol in allow.require else 'dp'}",
        )
    if noised and value is not None and protocol == "woe_dp" and allow.min_noise_multiplier is not None:
        from sampan.vertical.histograms import histogram_sigma

        z = histogram_sigma(1.0, float(value), float(meta.get("dp_delta") or 1e-5))
        if z < allow.min_noise_multiplier:
            raise JobRefused(
                party,
                "min_noise_multiplier",
                f"WOE dp_epsilon {value} is a noise multiplier of "
                f"{z:.3g}, below this party's minimum {allow.min_noise_multiplier}",
            )
