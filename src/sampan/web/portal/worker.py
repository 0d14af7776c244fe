"""The portal's evaluation worker: ``python -m sampan.web.portal.worker`` runs ONE evaluation and exits.

Started by `runner.EvaluationRunner` (see its note for the threat model). In order: read the job (one JSON object
on stdin, at most MAX_JOB_BYTES; it holds the token, so it is never an argument or an environment variable), bound
this process (RLIMIT_AS, RLIMIT_CPU), install the egress guard (`sampan.verify.egress.install_connect_guard`: no
Python socket of this process reaches a refused address, whatever code opens it), pin the endpoint, run the
catalogue (`sampan.verify.runner.run_evaluation` with the policy on its Target: the API client is pinned and the
addresses the platform names for the verifier's party are checked before the proxy relays to them), write the
reports (`sampan.verify.report.write_all`) and print JSON lines on stdout: {"event": "progress", ...the
ProgressEvent...}, then {"event": "finished", "counts": ...} or {"event": "failed", "error": ...}. Exit status 0
only when the reports are written.

What this process cannot guard: gRPC's C core opens its sockets without Python (Sampan's deployed-mode party
agent: it dials only the verifier's loopback proxy, whose upstream is pinned and checked) and a child process
(Flower's client in its own venv: the same, it dials only that proxy). A platform whose party kit would dial
anything else is not a kit this repository ships. ``local_platform`` ("weak"/"sampan") starts the embedded mode's
in-repo platform inside this process (loopback, a fresh token; Sampan's in-process party kit needs that).
"""

from __future__ import annotations

import json
import logging
import resource
import secrets
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import Any

MAX_JOB_BYTES = 1 << 20
log = logging.getLogger("sampan.web.portal.worker")


def emit(event: dict[str, Any]) -> None:
    """One JSON line on stdout (the runner's only channel from this process)."""
    sys.stdout.write(json.dumps(event, default=str) + "\n")
    sys.stdout.flush()


def apply_limits(memory_limit_mb: int | None, cpu_limit_s: int | None) -> None:
    """Bound this process: address space (a MemoryError past it) and CPU seconds (SIGXCPU, then SIGKILL)."""
    if memory_limit_mb:
        size = int(memory_limit_mb) * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (size, size))
    if cpu_limit_s:
        resource.setrlimit(resource.RLIMIT_CPU, (int(cpu_limit_s), int(cpu_limit_s) + 5))


def _local_platform(stack: ExitStack, name: str) -> tuple[str, str, dict[str, Any]]:
    """Start an in-repo platform on this process's loopback: (url, token, Target extras). As `sampan verify local`
    does: Sampan over HTTPS (a throwaway CA whose file the verifier trusts), the weak platform over plain http."""
    import os

    from sampan.verify.catalogue.http import TargetTLS
    from sampan.verify.pki import VerifierCA
    from sampan.verify.serve_local import ServerTLS, serve_app
    from sampan.verify.server import make_benchmark_app

    backend: Any
    if name == "weak":
        from sampan.verify.platforms.weak import WeakBackend

        backend = WeakBackend()
    elif name == "sampan":
        from sampan.web.bench_api import SampanBackend

        backend = SampanBackend()
    else:
        raise ValueError(f"no local platform {name!r}")
    close = getattr(backend, "close", None)
    if callable(close):
        stack.callback(close)
    token = secrets.token_urlsafe(32)
    extras: dict[str, Any] = {"local_pids": (os.getpid(),)}
    server_tls = None
    if name == "sampan":
        ca = stack.enter_context(VerifierCA(name="sampan portal local CA"))
        cert = ca.server_cert("127.0.0.1")
        server_tls = ServerTLS(cert.cert_file, cert.key_file)
        extras["tls"] = TargetTLS(ca_file=str(ca.ca_file))
    server = stack.enter_context(serve_app(make_benchmark_app(backend, token=token), tls=server_tls))
    return server.url, token, extras


def run_job(job: dict[str, Any]) -> int:
    """Run the evaluation ``job`` describes; returns the exit status (0: reports written)."""
    from sampan.verify.catalogue.http import TargetTLS
    from sampan.verify.egress import EgressPolicy, EgressRefused, install_connect_guard, own_listening_ports
    from sampan.verify.progress import ProgressEvent
    from sampan.verify.report import write_all
    from sampan.verify.runner import EvaluationError, Target, run_evaluation

    apply_limits(job.get("memory_limit_mb"), job.get("cpu_limit_s"))
    allow = [str(a) for a in job.get("allow") or []]
    pinned_ip = job.get("pinned_ip")
    with ExitStack() as stack:
        local = job.get("local_platform")
        extras: dict[str, Any] = {}
        if local:
            url, token, extras = _local_platform(stack, str(local))  # reached on loopback, its own ports only
        else:
            url, token = str(job["url"]), str(job["token"])
        host = _host_of(url)

        def resolver(name: str, port: int) -> list[str]:
            from sampan.verify.egress import system_resolver

            if pinned_ip and name == host:
                return [str(pinned_ip)]  # what the qualification check saw: no second answer for this name
            return system_resolver(name, port)

        policy = EgressPolicy(allow, resolver=resolver, own_ports=own_listening_ports if local else None)
        install_connect_guard(policy, local_ports=own_listening_ports)
        tls = extras.pop("tls", None)
        ca_pem = job.get("tls_cert_pem")
        if ca_pem and not local:
            ca_file = stack.enter_context(_temp_file(str(ca_pem)))
            tls = TargetTLS(ca_file=ca_file)
        target = Target(url=url.rstrip("/").removesuffix("/bench/v1"), token=token, tls=tls, egress=policy,
                        **extras)

        def progress(event: ProgressEvent) -> None:
            emit({"event": "progress", **event.to_dict()})

        try:
            evaluation = run_evaluation(target, str(job.get("profile") or "quick"), seed=job.get("seed"),
                                        progress=progress, only=list(job.get("only") or []) or None,
                                        data_dir=job.get("data_dir"))
        except (EvaluationError, EgressRefused) as exc:
            emit({"event": "failed", "error": _scrub(str(exc), token)})
            return 3
        out = Path(str(job["out"]))
        write_all(evaluation, out, pdf=job.get("pdf"))
        emit({"event": "finished", "counts": evaluation.counts(), "out": str(out)})
        return 0


def _host_of(url: str) -> str:
    from urllib.parse import urlsplit

    return (urlsplit(url).hostname or "").lower().rstrip(".")


def _temp_file(text: str) -> Any:
    import contextlib
    import os
    import tempfile

    @contextlib.contextmanager
    def made() -> Any:
        fd, path = tempfile.mkstemp(prefix="sampan-portal-ca-", suffix=".pem")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
            yield path
        finally:
            os.unlink(path)

    return made()


def _scrub(text: str, token: str) -> str:
    return text.replace(token, "[token]") if token else text


def main() -> int:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    raw = sys.stdin.buffer.read(MAX_JOB_BYTES + 1)
    if len(raw) > MAX_JOB_BYTES:
        emit({"event": "failed", "error": "the job description is too large"})
        return 2
    try:
        job = json.loads(raw)
        if not isinstance(job, dict) or "out" not in job:
            raise ValueError("not a job object")
    except ValueError as exc:
        emit({"event": "failed", "error": f"the job description is not valid JSON: {exc}"})
        return 2
    try:
        return run_job(job)
    except Exception as exc:  # noqa: BLE001 (one line for the portal; the traceback goes to the log)
        log.exception("the evaluation failed")
        said = _scrub(f"{type(exc).__name__}: {exc}", str(job.get("token") or ""))
        if _out_of_memory(exc):
            said = f"the evaluation ran out of its {job.get('memory_limit_mb')} MB of memory ({said[:300]})"
        emit({"event": "failed", "error": said})
        return 4 if _out_of_memory(exc) else 1


def _out_of_memory(exc: BaseException) -> bool:
    """MemoryError, or the loader / allocator failing under RLIMIT_AS (an ImportError or OSError saying so)."""
    import errno

    text = str(exc)
    return (isinstance(exc, MemoryError) or getattr(exc, "errno", None) == errno.ENOMEM
            or "failed to map segment" in text or "Cannot allocate memory" in text)


if __name__ == "__main__":
    sys.exit(main())
