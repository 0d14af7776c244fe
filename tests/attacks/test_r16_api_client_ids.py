"""R16-API-14: BenchmarkClient accepts an answer about another job (or project) than the one it asked for.

`job(j)`, `results(j)`, `cancel(j)` and `submit_job(p, ...)` parse the answer's model but never compare its
`job_id` / `project_id` with the request: a platform can answer every `GET /jobs/j2/results` with the results
of an earlier, cleaner job j1 (or report a job of another project), and the typed client hands them on as j2's.
The ids are in the contract precisely so the verifier can bind an answer to its request.
Fixed: regular tests now."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

httpx = pytest.importorskip("httpx")

from sampan.verify.api import VERSION_HEADER, TaskSpec  # noqa: E402
from sampan.verify.client import BenchmarkClient, VerifyError  # noqa: E402

JOB_J1 = {"job_id": "j1", "project_id": "p1", "state": "succeeded", "round": 2, "rounds": 2,
          "created_at": datetime.now(UTC).isoformat()}


def _answer(request: httpx.Request) -> httpx.Response:
    path = request.url.path
    body: dict[str, object] = {"job_id": "j1", "metrics": {"auc": 0.99}} if path.endswith("/results") else JOB_J1
    status = 201 if request.method == "POST" and path.endswith("/jobs") and "/projects/" in path else 200
    return httpx.Response(status, content=json.dumps(body).encode(), headers={VERSION_HEADER: "1.0"})


@pytest.mark.parametrize("call", ["job", "results", "cancel", "submit_job"])
def test_answers_are_bound_to_the_requested_ids(call: str) -> None:
    spec = TaskSpec(kind="horizontal", label="y", features={"bank": ["x"]}, rounds=2)
    with BenchmarkClient("http://platform", "t", transport=httpx.MockTransport(_answer)) as client, \
            pytest.raises(VerifyError) as refused:
        if call == "submit_job":
            client.submit_job("p2", spec)  # answered with a job of project p1
        else:
            getattr(client, call)("j2")  # answered about job j1
    assert refused.value.code == "bad_response"
