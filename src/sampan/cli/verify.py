"""`sampan verify`: evaluate an FL platform through the Benchmark API and write its reports.

    run      --target URL: the platform under test (its token from an environment variable, never argv)
    local    --platform weak|sampan|flower: start an in-repo platform on 127.0.0.1 and evaluate it
    report   re-render every report from a results.json
    compare  two results.json side by side as one HTML page
    table    test id x platform verdicts of several results.json as Markdown (docs/verification)

The runner (`sampan.verify.runner`), the web stack and reportlab are imported only when a command runs.
Every output of a run is written into one folder at once (a staging folder, then a rename): after a
failure or Ctrl-C the folder holds the previous report or nothing, never half of a new one.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from sampan.cli.error_path import ErrorHandlingGroup
from sampan.cli.verify_progress import ProgressDisplay

if TYPE_CHECKING:
    from sampan.verify.results import Evaluation

__all__ = ["verify_app"]

verify_app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, cls=ErrorHandlingGroup,
                         no_args_is_help=True,
                         help="Verify an FL platform through the Benchmark API: test catalogue, "
                              "HTML/PDF/JSON/JUnit reports, comparisons.")

PROFILES = ("quick", "standard", "full")
LOCAL_PLATFORMS = ("weak", "sampan", "flower")


def _config_error(message: str) -> Exception:
    from sampan.errors import ConfigError

    return ConfigError(message)


def _plan(profile: str | None, seed: int | None, only: list[str] | None,
          manifest: Path | None) -> tuple[str, int | None, list[str] | None, str]:
    """(profile, seed, only, dataset) from the options, or from a saved manifest to reproduce an evaluation."""
    if manifest is None:
        chosen = profile or "quick"
        if chosen not in PROFILES:
            raise _config_error(f"--profile {chosen!r}: choose one of {', '.join(PROFILES)}")
        return chosen, seed, only, "german"
    if profile is not None or seed is not None or only:
        raise _config_error("--manifest fixes the profile, seed and tests: leave out --profile, --seed and --only")
    from sampan.verify.manifest import load_manifest, reproduce

    recorded = load_manifest(manifest)
    reproduce(recorded)  # the same draws, or a ConfigError naming what changed, before anything runs
    tests = recorded.get("tests")
    listed = [str(t) for t in tests] if isinstance(tests, list) and tests else None
    return str(recorded["profile"]), int(recorded["seed"]), listed, str(recorded.get("dataset") or "german")


def _read_token(var: str) -> str:
    token = os.environ.get(var, "").strip()
    if not token:
        raise _config_error(f"--token-env {var}: that environment variable is not set or empty (export the "
                            "platform's Benchmark API token in it)")
    return token


def _pem_file(option: str, path: Path | None, marker: str) -> str | None:
    """The path as a string once it is checked to be a readable PEM file holding ``marker``."""
    if path is None:
        return None
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise _config_error(f"{option} {path}: cannot read ({exc})") from None
    if f"-----BEGIN {marker}" not in text and not (marker == "PRIVATE KEY" and "PRIVATE KEY-----" in text):
        raise _config_error(f"{option} {path}: no PEM {marker.lower()} in it")
    return str(path)


def _tls_options(ca: Path | None, cert: Path | None, key: Path | None) -> dict[str, str] | None:
    if (cert is None) != (key is None):
        raise _config_error("--client-cert and --client-key go together (the verifier's mTLS identity)")
    files = {"ca_file": _pem_file("--ca", ca, "CERTIFICATE"), "cert_file": _pem_file("--client-cert", cert,
                                                                                       "CERTIFICATE"),
             "key_file": _pem_file("--client-key", key, "PRIVATE KEY")}
    chosen = {k: v for k, v in files.items() if v is not None}
    return chosen or None


# ---- running -------------------------------------------------------------------------------------------------


def _run_evaluation(url: str, token: str, tls: dict[str, str] | None, profile: str, *, seed: int | None,
                    only: list[str] | None, progress: Callable[[Any], None],
                    local: dict[str, Any] | None = None, dataset: str = "german") -> Evaluation:
    """Call the runner (`sampan.verify.runner.run_evaluation`). ``tls`` holds TargetTLS's file fields; ``local``
    what a locally started platform adds (its party kit, its process ids). One place, so tests can stand in."""
    from sampan.cli.error_path import fail
    from sampan.verify.catalogue.http import TargetTLS
    from sampan.verify.runner import EvaluationError, Target, run_evaluation

    target_tls = TargetTLS(ca_file=tls.get("ca_file"), cert_file=tls.get("cert_file"),
                           key_file=tls.get("key_file")) if tls else None
    target = Target(url=url, token=token, tls=target_tls, **(local or {}))
    try:
        return run_evaluation(target, profile, seed=seed, progress=progress, only=only, dataset=dataset)
    except EvaluationError as exc:  # the target is unreachable or its /info unreadable: fix the URL/token/CA
        fail(exc)


def _finish(evaluation: Evaluation, out: Path, *, pdf: bool | None, strict: bool) -> None:
    from rich.console import Console
    from rich.markup import escape

    from sampan.errors import ExitCode
    from sampan.verify.report import write_all
    from sampan.verify.report._common import overall

    written = write_all(evaluation, out, pdf=pdf)
    counts = evaluation.counts()
    console = Console(highlight=False)
    t = evaluation.target
    console.print(f"[bold]{escape(t.platform or t.url)} {escape(t.platform_version)}[/] ({escape(evaluation.profile)}"
                  f"): {len(evaluation.outcomes)} tests: [green]{counts['pass']} passed[/], [red]{counts['fail']} "
                  f"failed[/], {counts['skip']} skipped, [yellow]{counts['error']} errors[/] -> "
                  f"{escape(overall(evaluation))}", soft_wrap=True)
    for path in written:
        console.print(f"  {escape(str(path))}", soft_wrap=True)
    if strict and (counts["fail"] or counts["error"]):
        raise typer.Exit(ExitCode.PROTOCOL)


_OUT = typer.Option(Path("verify-report"), "--out", help="Folder for report.html, report.pdf, results.json, "
                    "junit.xml and manifest.json (replaced only if it holds nothing else).")
_PROFILE = typer.Option(None, "--profile", help="quick (about a minute; the default), standard (goal 15 min) or "
                        "full.")
_MANIFEST = typer.Option(None, "--manifest", help="Reproduce an evaluation: its manifest.json (or results.json) "
                         "fixes profile, seed, dataset and tests; refused if the draws would differ.")
_SEED = typer.Option(None, "--seed", help="Seed of the random column draw and splits (default: a fresh random "
                     "one, recorded in the manifest).")
_ONLY = typer.Option(None, "--only", help="Run only these test ids (repeat the option).")
_PDF = typer.Option(None, "--pdf/--no-pdf", help="Write report.pdf (default: when reportlab is installed).")
_STRICT = typer.Option(False, "--strict", help="Exit with code 5 when a test failed or errored (for CI).")
_QUIET = typer.Option(False, "--quiet", help="No progress display.")


@verify_app.command("run")
def run(
    target: str = typer.Option(..., "--target", help="The platform's Benchmark API URL (its root or /bench/v1)."),
    token_env: str = typer.Option("SAMPAN_BENCH_TOKEN", "--token-env", help="Environment variable holding the "
                                  "API's bearer token (never passed on the command line)."),
    ca: Path | None = typer.Option(None, "--ca", help="PEM file of the CA that signed the platform's TLS "
                                   "certificate (default: the system's trust store)."),
    client_cert: Path | None = typer.Option(None, "--client-cert", help="PEM certificate the verifier presents "
                                            "when the platform's API requires mTLS."),
    client_key: Path | None = typer.Option(None, "--client-key", help="Its private key (PEM)."),
    profile: str | None = _PROFILE, out: Path = _OUT, seed: int | None = _SEED, only: list[str] | None = _ONLY,
    manifest: Path | None = _MANIFEST, pdf: bool | None = _PDF, strict: bool = _STRICT, quiet: bool = _QUIET,
) -> None:
    """Evaluate the platform at --target with the test catalogue and write every report."""
    if not target.startswith(("http://", "https://")):
        raise _config_error(f"--target {target!r}: expected an http:// or https:// URL")
    chosen, seed, only, dataset = _plan(profile, seed, only, manifest)
    token, tls = _read_token(token_env), _tls_options(ca, client_cert, client_key)
    root = target.rstrip("/")
    root = root[: -len("/bench/v1")] if root.endswith("/bench/v1") else root  # the runner adds /bench/v1 itself
    with ProgressDisplay(quiet) as display:
        evaluation = _run_evaluation(root, token, tls, chosen, seed=seed, only=only, progress=display,
                                     dataset=dataset)
    _finish(evaluation, out, pdf=pdf, strict=strict)


@contextlib.contextmanager
def _local_platform(name: str, token: str, *, tls: bool,
                    deployed: bool = False) -> Iterator[tuple[str, dict[str, str] | None, dict[str, Any]]]:
    """Start the named in-repo platform's Benchmark API on 127.0.0.1:<free port>; yields (url, the runner's TLS
    files, runner extras). ``tls``: serve HTTPS with a server certificate from a throwaway local CA (what a real
    deployment of the platform does), else plain HTTP. ``deployed`` (sampan): the verifier's consortium CA is made
    here and handed to both the backend (its coordinator and agents get their certificates from it) and the runner."""
    from sampan.verify.serve_local import ServerTLS, serve_app
    from sampan.verify.server import make_benchmark_app

    with contextlib.ExitStack() as stack:
        server_tls, client_tls = None, None
        if tls:
            from sampan.verify.pki import VerifierCA

            ca = stack.enter_context(VerifierCA(name="sampan verify local CA"))
            cert = ca.server_cert("127.0.0.1")
            server_tls = ServerTLS(cert.cert_file, cert.key_file)
            client_tls = {"ca_file": str(ca.ca_file)}
        extras: dict[str, Any] = {"local_pids": (os.getpid(),)}  # in this process; the kit is the one /info names
        issuer = None
        if deployed:
            from sampan.verify.pki import VerifierCA

            issuer = extras["verifier_ca"] = stack.enter_context(VerifierCA(name="sampan verify consortium CA"))
        backend = stack.enter_context(_local_backend(name, issuer=issuer))
        server = stack.enter_context(serve_app(make_benchmark_app(backend, token=token), tls=server_tls))
        yield server.url, client_tls, extras


@contextlib.contextmanager
def _local_backend(name: str, *, issuer: Any = None) -> Iterator[Any]:
    import importlib

    from sampan.errors import ConfigError

    if name == "weak":
        from sampan.verify.platforms.weak import WeakBackend

        backend: Any = WeakBackend()
    elif name == "flower":  # Flower runs in its own venv; a missing one is a FlowerMissing naming the fix
        from sampan.verify.platforms.flower import make_flower_backend

        backend = make_flower_backend()
    else:
        try:
            module = importlib.import_module("sampan.web.bench_api")
        except ImportError as exc:
            raise ConfigError(f"--platform sampan needs the 'console' extra ({exc})") from None
        backend = module.SampanBackend(issuer=issuer)
    try:
        yield backend
    finally:
        close = getattr(backend, "close", None)
        if callable(close):
            close()


@verify_app.command("local")
def local(
    platform: str = typer.Option(..., "--platform", help="weak (the negative control), sampan, or flower (needs "
                                 "the 'flower' extra)."),
    tls: bool | None = typer.Option(None, "--tls/--no-tls", help="Serve the platform's API over HTTPS (a throwaway "
                                    "local CA). Default: HTTPS for sampan and flower, plain HTTP for weak."),
    profile: str | None = _PROFILE, out: Path = _OUT, seed: int | None = _SEED, only: list[str] | None = _ONLY,
    manifest: Path | None = _MANIFEST, pdf: bool | None = _PDF, strict: bool = _STRICT, quiet: bool = _QUIET,
    deployed: bool = typer.Option(False, "--deployed", help="sampan: run every job with a verifier's party on a real "
                                  "deployment (coordinator and party agents over gRPC with mutual TLS, certificates "
                                  "from the verifier's CA), so wire bytes and the party mTLS tests apply."),
) -> None:
    """Start an in-repo platform on this machine (127.0.0.1, a fresh token) and evaluate it."""
    if platform not in LOCAL_PLATFORMS:
        raise _config_error(f"--platform {platform!r}: choose one of {', '.join(LOCAL_PLATFORMS)}")
    if deployed and platform != "sampan":
        raise _config_error("--deployed applies to --platform sampan only")
    chosen, seed, only, dataset = _plan(profile, seed, only, manifest)
    token = secrets.token_urlsafe(32)
    with ProgressDisplay(quiet) as display:
        display.progress.update(display.task, description=f"starting {platform}")
        use_tls = tls if tls is not None else platform != "weak"
        with _local_platform(platform, token, tls=use_tls, deployed=deployed) as (url, client_tls, extras):
            evaluation = _run_evaluation(url, token, client_tls, chosen, seed=seed, only=only, progress=display,
                                         local=extras, dataset=dataset)
    _finish(evaluation, out, pdf=pdf, strict=strict)


@verify_app.command("report")
def report(
    results: Path = typer.Argument(..., help="A results.json written by `sampan verify run`."),
    out: Path = _OUT, pdf: bool | None = _PDF,
) -> None:
    """Re-render report.html, report.pdf, junit.xml and manifest.json from a results.json."""
    from sampan.verify.results import load_evaluation

    _finish(load_evaluation(results), out, pdf=pdf, strict=False)


@verify_app.command("compare")
def compare(
    a: Path = typer.Argument(..., help="The first results.json (A)."),
    b: Path = typer.Argument(..., help="The second results.json (B)."),
    out: Path = typer.Option(Path("compare.html"), "--out", help="The HTML file to write."),
) -> None:
    """Two evaluations side by side: verdicts and figures per test, changes highlighted."""
    from sampan.verify.report.compare import changes, write_comparison
    from sampan.verify.results import load_evaluation

    first, second = load_evaluation(a), load_evaluation(b)
    path = write_comparison(first, second, out)
    diff = changes(first, second)
    n_changed = sum(1 for *_, status in diff if status == "changed")
    typer.echo(f"{len(diff)} tests, {n_changed} verdict(s) changed -> {path}")


@verify_app.command("table")
def matrix(
    results: list[Path] = typer.Argument(..., help="results.json files, one per platform (columns in this order)."),
    out: Path | None = typer.Option(None, "--out", help="Write the Markdown here (default: print it)."),
) -> None:
    """Test id x platform verdicts as a Markdown table (the docs/verification results table)."""
    from sampan.files import atomic_write_text
    from sampan.verify.report.compare import render_matrix
    from sampan.verify.results import load_evaluation

    text = render_matrix([load_evaluation(p) for p in results])
    if out is None:
        typer.echo(text, nl=False)
    else:
        atomic_write_text(out, text)
        typer.echo(f"wrote {out}")
