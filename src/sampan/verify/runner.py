"""Run an evaluation: draw the data, fix the manifest, run each test of a profile in isolation, report progress.

``run_evaluation(target, profile, seed=..., progress=..., only=...) -> Evaluation`` is a library call (the CLI
and the portal of issue 17 both use it). Each test runs in its own thread with a time bound: an exception or
an overrun becomes that test's verdict "error" with a message, never the end of the run. Tests run one after
another (the timings of the performance tests must not share the machine with another test).

A test that does not apply (a capability the platform lacks, no party kit, `NotApplicable` from the test) is
"skip", except when the test checks a claim the platform makes in /info: then it is "fail" ("claimed but not
verifiable"), since a protection the verifier cannot test is not shown (R16-VERDICT-7).
"""

from __future__ import annotations

import dataclasses
import secrets
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sampan.errors import SampanError
from sampan.verify.catalogue.base import Context, Gamed, NotApplicable, Result, Test, report_threshold
from sampan.verify.catalogue.data import make_bench_data
from sampan.verify.catalogue.http import Api, TargetTLS
from sampan.verify.catalogue.registry import tests_for
from sampan.verify.manifest import build_manifest
from sampan.verify.progress import ProgressEvent, ProgressFn, no_progress
from sampan.verify.results import Evaluation, Outcome, TargetInfo, Verdict

__all__ = ["Target", "EvaluationError", "run_evaluation", "run_test"]


class EvaluationError(SampanError):
    """The evaluation could not start (target unreachable, /info unreadable, data missing): names the target."""


@dataclass(frozen=True)
class Target:
    """A platform under test: its Benchmark API base URL (without /bench/v1), token and TLS settings.

    ``kit`` overrides the party kit named by /info ("" = run no party: black-box tests only);
    ``local_pids`` are the platform's processes when it runs on this machine (P-CPU-MEM reads them);
    ``verifier_ca``: the consortium CA (`pki.VerifierCA`) a locally started platform was set up with (Sampan's
    deployed mode): the verifier's party takes its certificates from it instead of a fresh CA.
    ``egress``: an `egress.EgressPolicy` (the portal): the API client is pinned to the checked address, plain http
    is refused off loopback, and every address the platform names is checked before it is dialled (None: connect
    wherever told, the CLI's behaviour).
    """

    url: str
    token: str
    tls: TargetTLS | None = None
    kit: str | None = None
    local_pids: tuple[int, ...] = ()
    verifier_ca: Any = None
    egress: Any = None


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _resolve_kit(target: Target, info: dict[str, Any]) -> tuple[str | None, str]:
    name = target.kit if target.kit is not None else info.get("party_kit")
    if not name:
        return None, "no party kit: black-box tests only"
    from sampan.verify.kits import KitError, get_kit

    try:
        get_kit(str(name))
    except KitError as exc:
        return None, str(exc)
    return str(name), f"party kit {name!r}"


def run_test(test: Test, ctx: Context, timeout_s: float | None = None) -> Outcome:
    """One test, isolated: capability checks, a thread with a time bound, any exception -> verdict error."""
    start = time.monotonic()
    headline = report_threshold(test.thresholds[0]) if test.thresholds else None

    def outcome(verdict: Verdict, message: str, seconds: float = 0.0, result: Result | None = None) -> Outcome:
        evidence = dict(result.evidence) if result else {}
        if len(test.thresholds) > 1:
            evidence.setdefault("thresholds", {k: report_threshold(k).__dict__ for k in test.thresholds})
        return Outcome(id=test.id, title=test.title, category=test.category, verdict=verdict, message=message,
                       threshold=headline, figures=dict(result.figures) if result else {}, evidence=evidence,
                       plots=list(result.plots) if result else [], seconds=seconds, claim=test.claim)

    claimed = test.claim is not None and bool(ctx.claims.get(test.claim))

    def not_applicable(reason: str, seconds: float = 0.0) -> Outcome:
        # R16-VERDICT-7: a protection claimed in /info that the verifier cannot test is not shown, so not met:
        # otherwise leaving out a capability, a kit or a probe address would turn a claim into "skip".
        if claimed:
            return outcome("fail", f"claimed but not verifiable ({test.claim}): {reason}", seconds)
        return outcome("skip", f"not applicable: {reason}", seconds)

    missing = [c for c in test.requires if c not in ctx.capabilities]
    if missing:
        return not_applicable(f"the platform lacks {', '.join(missing)}")
    if test.needs_kit and not ctx.kit:
        return not_applicable("no party kit for the verifier's own party")
    mine = dataclasses.replace(ctx, stop=threading.Event(), integrity=[])  # own stop flag and integrity checks
    box: dict[str, Any] = {}

    def body() -> None:
        try:
            box["result"] = test.run(mine)
        except Gamed as exc:  # R16-VERDICT-2/-4: canaries left out, or the judged export not the federation's
            box["result"] = Result("fail", str(exc), evidence={exc.evidence_key: exc.evidence})
        except NotApplicable as exc:
            box["not_applicable"] = str(exc)
        except BaseException as exc:  # noqa: BLE001 (one test's failure is its verdict, never the run's end)
            box["error"] = exc

    worker = threading.Thread(target=body, name=f"verify-{test.id}", daemon=True)
    worker.start()
    limit = timeout_s if timeout_s is not None else test.timeout_s
    worker.join(limit)
    seconds = time.monotonic() - start
    if worker.is_alive():
        mine.stop.set()  # a polling job cancels itself; the thread is a daemon and is left to end
        return outcome("error", f"timed out after {limit:.0f} s", seconds)
    if "error" in box:
        exc = box["error"]
        return outcome("error", f"{type(exc).__name__}: {exc}", seconds)
    if "not_applicable" in box:
        return not_applicable(box["not_applicable"], seconds)
    result: Result = box["result"]
    checked = _with_checks(result, mine.integrity)
    return outcome(checked.verdict, checked.message + _unchecked_note(mine.integrity), seconds, checked)


def _with_checks(result: Result, checks: list[dict[str, Any]]) -> Result:
    """``result`` with the integrity checks its test made (export tie, canary trace) in its evidence, and where their
    evidence came from (R16B-5): a check made on an in-process kit's tap (the export tie, the canary trace, the
    attack hook the platform's process called) rests on the platform's own report, so the outcome says
    "self-reported" in its message and ``evidence_source`` (`dataplane.qualify_self_reported`)."""
    if not checks:
        return result
    out = dataclasses.replace(result, evidence={**result.evidence, "integrity": checks})
    flags = [c["party_in_process"] for c in checks if isinstance(c.get("party_in_process"), bool)]
    if flags:
        from sampan.verify.catalogue.dataplane import qualify_self_reported

        qualify_self_reported(out, _Plane(in_process=any(flags)))
    return out


@dataclass(frozen=True)
class _Plane:
    """What `qualify_self_reported` reads of a verifier party: whether the platform's process ran it."""

    in_process: bool


def _unchecked_note(checks: list[dict[str, Any]]) -> str:
    """Said in the message when a check could not be made (e.g. an export not tied to the federated model)."""
    unchecked = sorted({f"{c.get('check', 'check')} not checked: {c.get('why', '')}" for c in checks
                        if c.get("status") == "not checked"})
    return "; " + "; ".join(unchecked) if unchecked else ""


def run_evaluation(target: Target, profile: str = "quick", *, seed: int | None = None,
                   progress: ProgressFn = no_progress, only: Sequence[str] | None = None,
                   tests: Sequence[Test] | None = None, dataset: str = "german",
                   data_dir: str | Path | None = None, timeout_s: float | None = None) -> Evaluation:
    """Evaluate ``target`` with the tests of ``profile`` (or ``tests``, for callers with their own list)."""
    started = _now()
    chosen = list(tests) if tests is not None else tests_for(profile, list(only) if only else None)
    seed = int(seed) if seed is not None else secrets.randbits(128)  # not searchable offline from the draws
    api = Api(target.url, target.token, target.tls, egress=target.egress,
              plain_http="refuse" if target.egress is not None else "warn")
    try:
        try:
            reply = api.call("GET", "/info")
        except Exception as exc:  # noqa: BLE001 (httpx's connect/TLS errors: one line naming the target)
            raise EvaluationError(f"{target.url}: cannot reach the Benchmark API ({type(exc).__name__}: {exc})") \
                from None
        if reply.status != 200 or not isinstance(reply.body, dict):
            raise EvaluationError(f"{target.url}: GET /bench/v1/info answered {reply.status}"
                                  + (" (is the token right?)" if reply.status == 401 else ""))
        info: dict[str, Any] = reply.body
        progress(ProgressEvent("setup", "", 0, len(chosen), message="drawing columns and splits"))
        data = make_bench_data(seed, dataset, data_dir)
        kit, kit_note = _resolve_kit(target, info)
        manifest = build_manifest(profile=profile, seed=seed, data=data, info=info, tests=[t.id for t in chosen],
                                  target_url=target.url, dataset=dataset)
        manifest["party_kit"] = {"name": kit, "note": kit_note}
        ctx = Context(api=api, info=info, data=data, profile=profile, kit=kit, local_pids=target.local_pids,
                      data_dir=data_dir)
        manifest["job_seeds"] = ctx.job_seeds  # filled as jobs are submitted (secrets, not the evaluation seed)
        if target.verifier_ca is not None:
            ctx.cache["verifier_ca"] = ("ok", target.verifier_ca)
        outcomes: list[Outcome] = []
        total = len(chosen)
        for index, test in enumerate(chosen, start=1):
            progress(ProgressEvent("start", test.id, index, total))
            outcome = run_test(test, ctx, timeout_s)
            outcomes.append(outcome)
            progress(ProgressEvent("end", test.id, index, total, outcome.verdict, outcome.seconds, outcome.message))
        ctx.stop.set()
        progress(ProgressEvent("done", "", total, total))
    finally:
        api.close()
    return Evaluation(
        target=TargetInfo(url=target.url, platform=str(info.get("platform", "")),
                          platform_version=str(info.get("platform_version", "")),
                          api_version=str(info.get("api_version", "")),
                          capabilities=list(info.get("capabilities") or []), claims=dict(info.get("claims") or {})),
        profile=profile, started=started, finished=_now(), outcomes=outcomes, manifest=manifest)
