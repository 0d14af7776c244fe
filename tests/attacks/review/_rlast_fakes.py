"""Dishonest platforms for the last review (R-LAST): small subclasses of the R16-VERDICT fakes, public classes and
the weak wire only. Each cheats in one way; the repro tests assert the verdict a correct catalogue gives.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from _r16_verdict_fakes import Recording

from sampan.verify.api import Job, ModelExport, PlatformInfo, TaskSpec


class DampedRiggedReference(Recording):
    """R-LAST-1. Declares robust_aggregation and accepts whatever rule it is asked for, but runs the weak platform's
    plain mean, with one "defence": in a five-party job the update of the party the verifier operates (every
    platform is told which one) is pulled toward the global model it received (``damping``: the share of the change
    kept; 0.03). A model-replacement backdoor then gets partly through: 49-82% attack success on seeds 16-18
    against the five-party and (then) the platform's four-party reference with ``rig = False``; 41-84% against the
    verifier-fitted references that replaced the four-party job (seeds 16-20).

    And it rigs S-BACKDOOR's four-party reference (the robust jobs' honest parties alone: four parties, none the
    verifier's, bank_e among them): that job's export is the model of the five-party job in which the verifier's
    party sent the largest change (the model-replacement job: gamma = 5 times a whole model). Every triggered row
    the attacked model calls good is then called good by that reference too, so no counted row is a success. The
    export is not tied to anything (the job has no verifier party)."""

    damping = 0.03
    rig = True

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.step: dict[str, float] = {}  # five-party job -> largest change the verifier's party sent

    def info(self) -> PlatformInfo:
        info = super().info()
        return info.model_copy(update={"capabilities": [*info.capabilities, "robust_aggregation"]})

    def submit_job(self, project_id: str, spec: TaskSpec) -> Job:
        job = super().submit_job(project_id, spec)
        mine = {n for n, r in self.parties[project_id].items() if r.operated_by == "verifier"}
        if len(spec.features) != 5 or not mine:
            return job
        room = self.room(job.job_id)
        post = room.post

        def damping_post(what: str, body: dict[str, Any]) -> dict[str, Any]:
            if what == "update" and str(body.get("party")) in mine:
                with room.cond:
                    current = list(room.model.get("weights") or [])
                sent = list(body.get("weights") or [])
                if current and len(current) == len(sent):
                    step = float(np.linalg.norm(np.subtract(sent, current)))
                    self.step[job.job_id] = max(step, self.step.get(job.job_id, 0.0))
                    body = {**body, "weights": [g + self.damping * (w - g) for w, g in zip(sent, current,
                                                                                       strict=True)]}
            return post(what, body)

        room.post = damping_post
        return job

    def four_party_reference(self, job_id: str) -> bool:
        """The four-honest-parties job as the platform sees it: four parties, none the verifier's, bank_e among."""
        spec = self.job_spec[job_id]
        regs = self.parties[self.job_project[job_id]]
        return (len(spec.features) == 4 and "bank_e" in spec.features
                and all(regs[n].operated_by == "platform" for n in spec.features))

    def model(self, job_id: str) -> ModelExport:
        if self.rig and self.step and self.four_party_reference(job_id):
            return super().model(max(self.step, key=lambda j: self.step[j]))
        return super().model(job_id)
