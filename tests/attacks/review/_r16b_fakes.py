"""Dishonest platforms for the R16B re-review (after the R16-VERDICT fixes): small subclasses of the R16-VERDICT
fakes (`_r16_verdict_fakes`), public classes and the weak wire only. Each cheats in one way; the repro tests assert
the verdict a correct catalogue would give, so they xfail while the catalogue can be gamed.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from _r16_verdict_fakes import CanaryFreezer, CentralExport, Recording

from sampan.verify.api import Job, ModelExport, PlatformInfo, TableData, TaskSpec


def central_vector(tables: list[TableData], features: list[str], label: str, mean: np.ndarray,
                   scale: np.ndarray) -> np.ndarray:
    """[coefficients..., intercept] of a plain LR fitted on ``tables`` with the federation's standardisation."""
    from sampan.verify.datasets import fit_lr

    X: list[list[float]] = []
    y: list[float] = []
    for data in tables:
        idx = [data.columns.index(c) for c in features]
        lab = data.columns.index(label)
        X += [[float(row[i]) for i in idx] for row in data.rows]  # type: ignore[arg-type]
        y += [float(row[lab]) for row in data.rows]  # type: ignore[arg-type]
    coef, intercept = fit_lr((np.asarray(X) - mean) / scale, np.asarray(y))
    return np.append(np.asarray(coef, dtype=np.float64), float(intercept))


class FinalSwap(CentralExport):
    """R16B-1. Federated training is broken (learning rate 0: every round's global model is zero), but the *final*
    model it publishes to its parties (round rounds + 1, after the last update) is a central fit on the rows the
    platform holds, and the export is that same fit: the export tie compares the export with the last model the
    verifier's party received, which is now the central fit, and never asks whether that model follows from the
    rounds' updates."""

    def submit_job(self, project_id: str, spec: TaskSpec) -> Job:
        job = super().submit_job(project_id, spec)
        room = self.room(job.job_id)
        publish = room.publish
        rounds = int(room.task["rounds"])
        features = next(iter(spec.features.values()))
        held = [r.data for r in self.parties[project_id].values()
                if r.operated_by == "platform" and r.data is not None]

        def swapping_publish(**changes: Any) -> None:
            model = changes.get("model")
            if isinstance(model, dict) and "weights" in model and int(model.get("round", 0)) > rounds and held:
                vec = central_vector(held, list(features), spec.label, np.asarray(model["mean"]),
                                     np.asarray(model["scale"]))
                changes["model"] = {**model, "weights": vec.tolist()}
            publish(**changes)

        room.publish = swapping_publish
        return job

    def model(self, job_id: str) -> ModelExport:
        model = Recording.model(self, job_id)
        room = self.room(job_id)
        with room.cond:
            last = list(room.model.get("weights") or [])
        return model.model_copy(update={"coefficients": last[:-1], "intercept": float(last[-1])})


class PlanLeaker(Recording):
    """R16B-2. In a vertical job the join plan it sends the verifier's feature holder also carries every id of the
    label holder (a party the platform holds), outside the intersection too, as one comma-joined string: in the
    clear, but not as a string element equal to an id, the only clear form S-PSI-LEAK reads. It claims "psi"."""

    def info(self) -> PlatformInfo:
        info = super().info()
        return info.model_copy(update={"capabilities": [*info.capabilities, "psi"]})

    def submit_job(self, project_id: str, spec: TaskSpec) -> Job:
        job = super().submit_job(project_id, spec)
        if spec.kind != "vertical":
            return job
        room = self.room(job.job_id)
        publish = room.publish
        held = [r.data for r in self.parties[project_id].values()
                if r.operated_by == "platform" and r.data is not None and spec.id_column in r.data.columns]

        def leaking_publish(**changes: Any) -> None:
            plan = changes.get("plan")
            if isinstance(plan, dict) and held:
                k = held[0].columns.index(str(spec.id_column))
                changes["plan"] = {**plan, "note": ",".join(str(row[k]) for row in held[0].rows)}
            publish(**changes)

        room.publish = leaking_publish
        return job


class FiveIgnorer(Recording):
    """R16B-3. The weak platform (plain FedAvg, no robust rule), except in a job of exactly five parties (only the
    robust-aggregation jobs of S-BYZANTINE / S-BACKDOOR have five; their party names, bank_e, say so too): there it
    drops the update of the party the verifier operates (``operated_by == "verifier"`` in its registration, which
    every platform is told), replacing it with the global model that party received. The attacker is always that
    party, so both tests see the four honest parties' model whatever the attack."""

    def submit_job(self, project_id: str, spec: TaskSpec) -> Job:
        job = super().submit_job(project_id, spec)
        mine = {n for n, r in self.parties[project_id].items() if r.operated_by == "verifier"}
        if len(spec.features) != 5 or not mine:
            return job
        room = self.room(job.job_id)
        post = room.post

        def ignoring_post(what: str, body: dict[str, Any]) -> dict[str, Any]:
            if what == "update" and str(body.get("party")) in mine:
                with room.cond:
                    current = list(room.model.get("weights") or [])
                if current:
                    body = {**body, "weights": current, "n": 0}
            return post(what, body)

        room.post = ignoring_post
        return job


class CanaryJitter(CanaryFreezer):
    """R16B-4. `CanaryFreezer` (no DP; the columns that are all zeros at every party it holds keep weight 0 in every
    published model), except that each published model puts a fresh jitter of about 1e-6 (on the raw 0/1 scale) on
    those columns: they are still frozen (the verifier's change is not in them), but no longer equal to the common
    term, which is all `canary_trace` asks. The export is the last published model (tied). The real columns train
    in the clear."""

    def submit_job(self, project_id: str, spec: TaskSpec) -> Job:
        job = Recording.submit_job(self, project_id, spec)  # not the freezer's publish: this one freezes
        frozen = self.frozen(job.job_id)
        room = self.room(job.job_id)
        publish = room.publish
        rng = np.random.default_rng()

        def jittering_publish(**changes: Any) -> None:
            model = changes.get("model")
            if isinstance(model, dict) and "weights" in model and frozen:
                scale = list(model.get("scale") or [1.0] * len(model["weights"]))
                # jitter on the raw 0/1 scale (weight / scale), so included and excluded canaries look alike
                changes["model"] = {**model, "weights": [float(rng.normal(0.0, 1e-6) * scale[i]) if i in frozen
                                                         else w for i, w in enumerate(model["weights"])]}
            publish(**changes)

        room.publish = jittering_publish
        return job

    def model(self, job_id: str) -> ModelExport:
        model = Recording.model(self, job_id)
        room = self.room(job_id)
        with room.cond:
            last = list(room.model.get("weights") or [])
        return model.model_copy(update={"coefficients": last[:-1], "intercept": float(last[-1])}) if last else model


class StaleDropout(Recording):
    """R16B-6 (variant). Never drops anyone: the dropout notice is taken out of the job, and the last update the
    leaving party sent (round ``after_round``) is filed again for every later round, so the weak aggregator, which
    waits for every party, averages that stale update to the end. Its round reports list the party in every round."""

    refiled: int | None = None  # in how many later rounds the stale update is filed again (None: all of them)

    def submit_job(self, project_id: str, spec: TaskSpec) -> Job:
        notice = None
        if spec.dropout is not None and self.refiled is not None:  # the party is waited for no longer than that
            notice = spec.dropout.model_copy(update={"after_round": spec.dropout.after_round + self.refiled})
        job = super().submit_job(project_id, spec.model_copy(update={"dropout": notice}))
        if spec.dropout is None:
            return job
        room = self.room(job.job_id)
        post = room.post
        gone, after, rounds = spec.dropout.party, spec.dropout.after_round, spec.rounds
        if self.refiled is not None:
            rounds = min(rounds, after + self.refiled)

        def caching_post(what: str, body: dict[str, Any]) -> dict[str, Any]:
            reply = post(what, body)
            if what == "update" and body.get("party") == gone and int(body.get("round", 0)) == after:
                for r in range(after + 1, rounds + 1):
                    post(what, {**body, "round": r})
            return reply

        room.post = caching_post
        return job


class StaleOnce(StaleDropout):
    """R16B-6 (the limit the dropout mark leaves): the stale update is filed again in round after + 1 only; later
    rounds average the parties that are there."""

    refiled = 1


def canary_shaped(spec: TaskSpec) -> bool:
    """The canary job of S-MIA / S-DP-AUDIT-ONE-RUN as any platform sees it: hundreds of features, every one named
    attr_<6 hex> (no other job of the catalogue has either)."""
    features = next(iter(spec.features.values()))
    return len(features) > 100 and all(f.startswith("attr_") for f in features)


class DpOnlyWhenAudited(Recording):
    """R16B-7. Claims DP at epsilon 1 (as the weak platform does) and adds Gaussian noise to every published model's
    raw-scale coefficients, all columns alike (an honest-looking central DP mechanism), but only in a canary-shaped
    job; every other job, DP requested or not, trains in the clear. The export is the last published model (tied)."""

    sigma = 30.0

    def noised(self, spec: TaskSpec) -> bool:
        """Which DP jobs get the noise: the canary-shaped ones."""
        return canary_shaped(spec)

    def submit_job(self, project_id: str, spec: TaskSpec) -> Job:
        job = super().submit_job(project_id, spec)
        if spec.dp is None or not self.noised(spec):
            return job
        room = self.room(job.job_id)
        publish = room.publish
        rng = np.random.default_rng()

        def noisy_publish(**changes: Any) -> None:
            model = changes.get("model")
            if isinstance(model, dict) and "weights" in model:
                w = np.asarray(model["weights"], dtype=np.float64)
                scale = np.append(np.asarray(model.get("scale") or np.ones(w.size - 1), dtype=np.float64), 1.0)
                # noise on the raw-scale coefficients (weight / scale), as a mechanism on the unscaled model would
                changes["model"] = {**model, "weights": (w + rng.normal(0.0, self.sigma, w.size) * scale).tolist()}
            publish(**changes)

        room.publish = noisy_publish
        return job

    def model(self, job_id: str) -> ModelExport:
        model = Recording.model(self, job_id)
        room = self.room(job_id)
        with room.cond:
            last = list(room.model.get("weights") or [])
        return model.model_copy(update={"coefficients": last[:-1], "intercept": float(last[-1])}) if last else model


class DpEverywhere(DpOnlyWhenAudited):
    """The control of S-DP-REPEAT (R16B-7): the same Gaussian noise on the published models, in every DP job."""

    def noised(self, spec: TaskSpec) -> bool:
        return True


class RepeatJitter(DpOnlyWhenAudited):
    """R16B-7 (the limit S-DP-REPEAT leaves): no noise in any DP job, except a jitter of 1e-6 (raw scale) on the
    published models of a DP job whose TaskSpec seed an earlier DP job had, i.e. only on the repeat."""

    sigma = 1e-6

    def noised(self, spec: TaskSpec) -> bool:
        seen = self.__dict__.setdefault("seeds", set())
        repeat = spec.seed in seen
        seen.add(spec.seed)
        return repeat


class StandardisationSwap(CentralExport):
    """R16B-8. Federated training learns nothing (learning rate 0 from a random start: every model it publishes is
    one random vector r). The final model it publishes carries r with an empty mean and scale, so the export tie
    compares coefficients and intercept only. The export is r, exactly (tied), with a standardisation of its own
    choosing: scale_j' = scale_j * r_j / c_j and one shifted mean make it score every row as the central fit c on the
    rows the platform holds (a scale may be negative: the API does not ask for a positive one)."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.start: dict[str, np.ndarray] = {}

    def submit_job(self, project_id: str, spec: TaskSpec) -> Job:
        job = super().submit_job(project_id, spec)  # learning rate 0
        room = self.room(job.job_id)
        publish = room.publish
        rounds = int(room.task["rounds"])
        d = len(next(iter(spec.features.values()))) + 1
        r = self.start.setdefault(job.job_id, np.random.default_rng().normal(0.0, 0.1, d))

        def random_publish(**changes: Any) -> None:
            model = changes.get("model")
            if isinstance(model, dict) and "weights" in model:
                model = {**model, "weights": r.tolist()}
                if int(model.get("round", 0)) > rounds:
                    model.update(mean=[], scale=[])  # the final model: no standardisation to tie
                changes["model"] = model
            publish(**changes)

        room.publish = random_publish
        return job

    def model(self, job_id: str) -> ModelExport:
        central = CentralExport.model(self, job_id)  # the central fit under the federation's standardisation
        r = self.start[job_id]
        assert central.standardisation is not None
        mean, scale = np.asarray(central.standardisation.mean), np.asarray(central.standardisation.scale)
        c, b_c = np.asarray(central.coefficients), central.intercept
        w, b = r[:-1], float(r[-1])
        new_scale = scale * w / c
        new_mean = mean.copy()
        k = int(np.argmax(np.abs(c)))
        new_mean[k] = mean[k] + (b - b_c) * scale[k] / c[k]
        from sampan.verify.api import Standardisation

        return central.model_copy(update={"coefficients": w.tolist(), "intercept": b, "standardisation":
                                          Standardisation(mean=new_mean.tolist(), scale=new_scale.tolist())})
