"""Dishonest platforms for REV16 (adversarial review of issue 16's verifier changes): small subclasses of the
R-LAST / R16-VERDICT fakes, public classes and the weak wire only. Each cheats in one way; the repro tests assert
the verdict a correct catalogue gives, so they xfail while the catalogue can be gamed.
"""

from __future__ import annotations

from typing import Any

from _r16_verdict_fakes import Recording
from _r16b_fakes import StaleDropout
from _rlast_fakes import DampedRiggedReference

from sampan.verify.api import Job, ModelExport, TaskSpec


class RiggedCleanReference(DampedRiggedReference):
    """REV16-1. The R-LAST-1 platform (declares robust_aggregation, runs a plain mean, damps the verifier's party's
    update to 3% so a model-replacement backdoor gets partly through) without the four-party rig, which is gone.
    Instead it rigs the one reference still its own: S-BACKDOOR's five-party clean job. A five-party job whose
    verifier party sends only small changes, submitted after a five-party job whose verifier party sent a large one
    (the model-replacement job: gamma = 5 times a whole model), gets that earlier job's final model as its own
    final model: published to the parties (so the verifier's party receives it and the export is tied) and
    exported. The clean reference then calls bad exactly the triggered rows the attacked model calls bad, so no
    counted row is ever flipped, however far the backdoor got."""

    rig = False  # the four-party rig of R-LAST-1 has nothing to rig now
    ratio = 3.0  # "large": the donor job's largest verifier step is this many times the current job's

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.donor_of: dict[str, str] = {}  # rigged job -> the job whose final model it carries

    def _donor(self, job_id: str) -> str | None:
        mine = self.step.get(job_id, 0.0)
        others = {j: s for j, s in self.step.items() if j != job_id and s > self.ratio * max(mine, 1e-12)}
        return max(others, key=lambda j: others[j]) if others else None

    def submit_job(self, project_id: str, spec: TaskSpec) -> Job:
        job = super().submit_job(project_id, spec)
        if len(spec.features) != 5:
            return job
        room = self.room(job.job_id)
        publish = room.publish
        last_round = spec.rounds + 1

        def rigged_publish(**changes: Any) -> None:
            model = changes.get("model")
            if isinstance(model, dict) and model.get("round") == last_round:
                donor = self._donor(job.job_id)
                if donor is not None:
                    self.donor_of[job.job_id] = donor
                    export = super(RiggedCleanReference, self).model(donor)
                    changes["model"] = {**model, "weights": [*export.coefficients, export.intercept]}
            publish(**changes)

        room.publish = rigged_publish
        return job

    def model(self, job_id: str) -> ModelExport:
        donor = self.donor_of.get(job_id)
        return super().model(donor if donor is not None else job_id)


class SelfPlantedBackdoor(DampedRiggedReference):
    """REV16-1 (order-independent). Declares robust_aggregation; in every five-party job it leaves the verifier's
    party out (its update replaced by the global model it received: damping 0, a robust rule's right) and, in the
    final model only, moves ``alpha`` of the way toward a backdoored model it fits itself the way the public
    catalogue code fits the attacker's (a plain LR on its own parties' rows plus the same rows with column 0 set to
    6.0, labelled 0). The robust jobs share one TaskSpec seed and the weak platform's training is a function of it,
    so the clean job and the attacked job export the same backdoored model: no counted row is flipped, in whatever
    order S-BYZANTINE and S-BACKDOOR run."""

    damping = 0.0
    alpha = 0.1  # seed 16: the clean job calls 119 of 250 triggered rows bad, the pooled fit all 250 (52% flipped)

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.planted: dict[str, list[float]] = {}

    def _backdoor(self, project_id: str, spec: TaskSpec, mean: Any, scale: Any) -> Any:
        import numpy as np

        from sampan.verify.datasets import fit_lr

        features = next(iter(spec.features.values()))
        X: list[list[float]] = []
        y: list[float] = []
        for reg in self.parties[project_id].values():
            if reg.operated_by != "platform" or reg.data is None or reg.name not in spec.features:
                continue
            idx = [reg.data.columns.index(c) for c in features]
            lab = reg.data.columns.index(spec.label)
            X += [[float(r[i]) for i in idx] for r in reg.data.rows]  # type: ignore[arg-type]
            y += [float(r[lab]) for r in reg.data.rows]  # type: ignore[arg-type]
        A = np.asarray(X)
        T = A.copy()
        T[:, 0] = 6.0
        coef, b = fit_lr(np.vstack([A, T]), np.concatenate([y, np.zeros(len(y))]))
        mean, scale = np.asarray(mean, float), np.asarray(scale, float)
        return np.append(coef * scale, b + float(coef @ mean))  # the same model on the job's standardised columns

    def submit_job(self, project_id: str, spec: TaskSpec) -> Job:
        job = super().submit_job(project_id, spec)
        if len(spec.features) != 5:
            return job
        room = self.room(job.job_id)
        publish = room.publish
        last_round = spec.rounds + 1

        def planting_publish(**changes: Any) -> None:
            import numpy as np

            model = changes.get("model")
            if isinstance(model, dict) and model.get("round") == last_round and "weights" in model:
                vec = np.asarray(model["weights"], float)
                target = self._backdoor(project_id, spec, model["mean"], model["scale"])
                planted = (vec + self.alpha * (target - vec)).tolist()
                self.planted[job.job_id] = planted
                changes["model"] = {**model, "weights": planted}
            publish(**changes)

        room.publish = planting_publish
        return job

    def model(self, job_id: str) -> ModelExport:
        model = super().model(job_id)
        planted = self.planted.get(job_id)
        if planted is None:
            return model
        return model.model_copy(update={"coefficients": planted[:-1], "intercept": planted[-1]})


class UnseededNoDp(Recording):
    """REV16-2. Claims DP at epsilon 1 (as the weak platform does) and adds no noise anywhere, not even in the
    canary job; it only ignores the TaskSpec seed of DP jobs, so its minibatch order comes from the OS
    (what the weak platform does for a job without a seed, and what any platform whose training is not bit-for-bit
    reproducible does without trying: unseeded shuffles, thread timing, non-deterministic kernels)."""

    def submit_job(self, project_id: str, spec: TaskSpec) -> Job:
        if spec.dp is not None:
            spec = spec.model_copy(update={"seed": None})
        return super().submit_job(project_id, spec)


class StaleSkipFirst(StaleDropout):
    """REV16-3. `StaleDropout` (never drops the party: its last update is filed again in every later round, which
    the mark catches at 0.67) plus one step: the verifier's party is never shown round 1 (its model poll waits for
    round 2; the platform files a no-op round-1 update in its name, the round-1 global itself, so its aggregator
    does not wait). The kit then sends one update, in round 2; the mark goes on the kit's ``after``-th update call
    (the second), which never comes, so the mark is "not checked", and that is no failure."""

    def submit_job(self, project_id: str, spec: TaskSpec) -> Job:
        job = super().submit_job(project_id, spec)
        if spec.dropout is None:
            return job
        room = self.room(job.job_id)
        post, view = room.post, room.view
        gone = spec.dropout.party
        d = len(next(iter(spec.features.values()))) + 1

        def noop_first(what: str, body: dict[str, Any]) -> dict[str, Any]:
            reply = post(what, body)
            if what == "stats" and body.get("party") == gone:
                post("update", {"party": gone, "round": 1, "weights": [0.0] * d, "n": int(body.get("n", 0))})
            return reply

        def hide_first(what: str, query: dict[str, str]) -> dict[str, Any]:
            if what == "model" and query.get("party") == gone and int(query.get("after", "-1")) < 1:
                query = {**query, "after": "1"}
            return view(what, query)

        room.post, room.view = noop_first, hide_first
        return job
