"""`RayEngine`: a party's row blocks as Ray tasks across its own cores and machines (`pip install 'sampan[ray]'`).

Why Ray, and why it is safe here: the party-local passes (histograms, gradients, scoring) are embarrassingly
parallel over row blocks, and Ray ships them with zero-copy NumPy in a shared object store. Ray serialises
tasks with cloudpickle, so a Ray cluster is code execution for whoever can reach it: it runs only inside one
party's trust boundary (docs/architecture.md, "Party compute engines"). Therefore:

* a local engine is a private Ray instance whose every server listens on 127.0.0.1 only (checked after start;
  a node address outside loopback stops it), without dashboard and without usage statistics;
* a cluster address must be a loopback or private (RFC 1918 / ULA) address: a public one is refused, naming
  the field, before anything connects;
* mutual TLS is on by default with certificates from a CA private to the party (`sampan.compute.engine_tls`):
  neither the coordinator nor another party holds one, so they cannot join or submit work;
* every engine server also demands Ray's bearer token (``RAY_AUTH_MODE=token``): Ray's TLS covers gRPC only,
  not the HTTP runtime-env agent, which writes files as the party. A local instance gets a fresh token in a 0600
  file of its own 0700 folder (never Ray's shared ``~/.ray/auth_token``), removed at close; a cluster uses the
  ``auth_token`` of ``[compute] tls_dir`` its nodes were started with, and is refused without one;
* ``RAY_ADDRESS`` never moves a private instance elsewhere (``address="local"``; the variable is removed while
  the engine runs);
* Ray's session folders (which Ray makes 0777: sockets, logs) sit inside a 0700 folder of the engine's own and
  are chmodded back to owner-only after start; folders left by an engine whose process died (killed, OOM) are
  swept by the next engine of the same user (their names carry the owning pid);
* a failed block reaches the caller as the block's own error (as `LocalEngine` raises it) or, for anything Ray
  wraps (a worker killed for memory, an exception that does not unpickle), as a short, data-free `PartyError`
  naming the block; Ray's text (remote tracebacks, the host's process list) goes only to the party's own log;
* results come back in block order (`ray.get` of the refs in submission order), so `reduce_in_order` gives
  the same bytes as `LocalEngine`.

Ray is imported here only, lazily: core Sampan never needs it.
"""

from __future__ import annotations

import atexit
import ipaddress
import logging
import os
import re
import secrets
import shutil
import stat
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from sampan.compute.engine_tls import EngineTLS, issue_engine_certs, load_engine_tls
from sampan.errors import ConfigError, PartyError

__all__ = ["RayEngine", "check_private_address", "check_tls_off_allowed", "import_ray"]

R = TypeVar("R")
_log = logging.getLogger(__name__)

_INSTALL_HINT = "the Ray compute engine needs the optional extra: pip install 'sampan[ray]'"
_ENV_FIXED = {
    "RAY_USAGE_STATS_ENABLED": "0",  # no usage statistics leave the party
    "RAY_DISABLE_IMPORT_WARNING": "1",
    "RAY_AUTH_MODE": "token",  # every server (the HTTP runtime-env agent too) demands the engine's token
}
_ENV_DROPPED = ("RAY_ADDRESS", "RAY_AUTH_TOKEN")  # only [compute] names the engine; only our file holds its token
_OWNED = re.compile(r"sampan-ray-(?:tls-)?(\d+)-")  # an engine folder, named by the pid of the process owning it


# RFC 1918 and IPv6 unique-local only: Python's `is_private` also counts documentation and other special ranges.
_PRIVATE_NETS = tuple(ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"))


def import_ray() -> Any:
    """The `ray` module, or a clear error naming the extra to install."""
    try:
        import ray
    except ImportError:
        raise ConfigError(_INSTALL_HINT) from None
    return ray


def _host_of(address: str) -> str:
    """The host part of ``ray://host:port``, ``host:port`` or ``[v6]:port``."""
    rest = address.split("://", 1)[1] if "://" in address else address
    rest = rest.split("/", 1)[0]
    if rest.startswith("["):
        return rest[1:].split("]", 1)[0]
    return rest.rsplit(":", 1)[0] if rest.count(":") == 1 else rest


def check_private_address(address: str, *, field: str = "[compute] address") -> str:
    """``address`` if its host is a loopback or private IP address; else a ConfigError naming ``field``.

    Why IPs only: a name could resolve to a public address later; a party's engine nodes are its own machines,
    whose private addresses it knows.
    """
    host = _host_of(address)
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        raise ConfigError(f"{field}: {address!r} must name the engine by a private IP address (loopback, "
                          "10/8, 172.16/12, 192.168/16 or fc00::/7), not a host name") from None
    if not (ip.is_loopback or any(ip in net for net in _PRIVATE_NETS if net.version == ip.version)):
        raise ConfigError(f"{field}: {address!r} is not a private interface; a party's compute engine listens "
                          "only on loopback or a private network inside the party (its tasks are pickled code)")
    return address


def check_tls_off_allowed(address: str, *, field: str = "[compute] tls") -> None:
    """A ConfigError naming ``field`` unless ``address`` is loopback: without TLS the party's rows would cross a
    network in plain text to whoever answers there ("private" is a routing property, not a trust boundary)."""
    host = _host_of(address)
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ConfigError(f"{field} = false is allowed only for an engine on loopback; {address!r} is on a network, "
                          "where the engine's mutual TLS (a CA private to this party) must stay on")


_EPHEMERAL: dict[str, EngineTLS] = {}


def _ephemeral_tls(party: str) -> EngineTLS:
    """This process's ephemeral engine certificates (CA key never written), made once and kept until exit.

    Why once per process: Ray's core reads its TLS file paths once per process, so a later engine in the same
    process (a test suite, a second run of a simulation) must find the same files there.
    """
    if "process" not in _EPHEMERAL:  # one set per process (the first engine's party names it)
        folder = Path(tempfile.mkdtemp(prefix=f"sampan-ray-tls-{os.getpid()}-"))
        atexit.register(shutil.rmtree, folder, True)
        _EPHEMERAL["process"] = issue_engine_certs(folder / "tls", party=party)
    return _EPHEMERAL["process"]


def sweep_dead_engine_folders(parent: str | Path | None = None) -> list[Path]:
    """Remove this user's engine folders (scratch, ephemeral TLS) whose owning process is gone; the removed paths.

    Why: a party killed with its engine (OOM killer, SIGKILL) runs neither ``close`` nor ``atexit``, so its node
    key, token and Ray logs would stay in the temp folder for good. A pid reused since is taken as alive (the
    folder waits for a later sweep), never the other way round.
    """
    base = Path(parent) if parent is not None else Path(tempfile.gettempdir())
    removed: list[Path] = []
    try:
        entries = list(base.iterdir())
    except OSError:
        return removed
    for path in entries:
        match = _OWNED.match(path.name)
        if match is None or int(match.group(1)) == os.getpid():
            continue
        try:
            info = os.lstat(path)
        except OSError:
            continue
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or _alive(int(match.group(1))):
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, another user's
    return True


def _make_private(root: Path) -> None:
    """Every folder under ``root`` owner-only again (Ray chmods its session folders to 0777)."""
    for folder, dirs, _ in os.walk(root):
        for name in [folder, *(os.path.join(folder, d) for d in dirs)]:
            try:
                if not os.path.islink(name):
                    os.chmod(name, stat.S_IMODE(os.lstat(name).st_mode) & 0o700)
            except OSError:
                pass  # gone meanwhile


def _call_block(fn: Callable[..., Any], data: Any, start: int, stop: int, *args: Any) -> Any:
    """What a Ray worker runs: one block of the protocol's module-level function."""
    return fn(data, start, stop, *args)


class RayEngine:
    """Row blocks as Ray tasks: a private local Ray (``address=None``) or the party's own cluster."""

    name = "ray"

    def __init__(self, address: str | None = None, *, num_workers: int = 2, tls: bool = True,
                 tls_dir: str | Path | None = None, party: str = "party") -> None:
        if num_workers < 1:
            raise ConfigError(f"[compute] num_workers must be >= 1, got {num_workers}")
        if address is not None:
            check_private_address(address)
            if not tls:
                check_tls_off_allowed(address)
        if address is not None and tls_dir is None:
            raise ConfigError("[compute] tls_dir: a Ray cluster address needs the folder of the party's engine "
                              "certificates and auth_token (the ones its cluster nodes were started with)")
        self.address = address
        self.num_workers = num_workers
        self._scratch: Path | None = None
        self._saved_env: dict[str, str | None] = {}
        self._auth_set = False
        self.tls: EngineTLS | None = None
        ray = import_ray()
        if ray.is_initialized():
            raise ConfigError("a Ray runtime is already running in this process; one RayEngine per party process")
        self._ray: Any = ray
        self._cluster_switch: bool | None = None
        try:
            sweep_dead_engine_folders()
            # 0700 and named by our pid: Ray's 0777 session folders inside are unreachable by other users, and a
            # later engine can tell when this process is gone.
            self._scratch = Path(tempfile.mkdtemp(prefix=f"sampan-ray-{os.getpid()}-"))
            if tls:
                self.tls = load_engine_tls(tls_dir) if tls_dir is not None else _ephemeral_tls(party)
            token = self._token(tls_dir)
            env: dict[str, str | None] = {**_ENV_FIXED, **dict.fromkeys(_ENV_DROPPED), "RAY_AUTH_TOKEN_PATH": token}
            if self.tls is not None:
                env.update(self.tls.environment())
            one_machine = address is None or ipaddress.ip_address(_host_of(address)).is_loopback
            if one_machine:
                # Ray advertises (and binds) the node's address and rewrites 127.0.0.1 to the primary interface's
                # unless this switch says "one machine", which makes every Ray server and client use 127.0.0.1.
                env["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
            self._set_env(env)
            self._auth_set = True
            _reload_auth()
            if one_machine:
                from ray._private import ray_constants  # the switch is read once, at Ray's import

                self._cluster_switch = ray_constants.ENABLE_RAY_CLUSTER
                ray_constants.ENABLE_RAY_CLUSTER = False
            if address is None:
                # "local", not None: Ray would otherwise take RAY_ADDRESS from the environment
                ray.init(address="local", num_cpus=num_workers, include_dashboard=False,
                         _node_ip_address="127.0.0.1", _temp_dir=str(self._scratch / "ray"), logging_level="ERROR",
                         log_to_driver=False, namespace="sampan")
                _make_private(self._scratch)
                self._check_loopback(ray)
            else:
                ray.init(address=address, logging_level="ERROR", log_to_driver=False, namespace="sampan")
            self._remote = ray.remote(num_cpus=1)(_call_block)
        except BaseException:
            self.close()
            raise

    def _token(self, tls_dir: str | Path | None) -> str:
        """The token file this engine's servers demand: the cluster's (from tls_dir), or a fresh one for a private
        instance, 0600 in the engine's own 0700 folder."""
        if self.address is not None:
            tls = self.tls if self.tls is not None else load_engine_tls(tls_dir or "")
            if tls.token is None:
                raise ConfigError(f"[compute] tls_dir: {Path(tls_dir or '')} has no auth_token; Ray's runtime-env "
                                  "agent is plain HTTP guarded only by this token: issue the engine folder again "
                                  "with `sampan.compute.issue_engine_certs` and start the cluster's nodes with "
                                  "RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH=<tls_dir>/auth_token")
            return str(tls.token)
        assert self._scratch is not None
        path = self._scratch / "auth_token"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_hex(32))
        return str(path)

    def _set_env(self, env: dict[str, str | None]) -> None:
        for key, value in env.items():
            self._saved_env.setdefault(key, os.environ.get(key))
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value

    @staticmethod
    def _check_loopback(ray: Any) -> None:
        gcs = ray.get_runtime_context().gcs_address
        nodes = [node.get("NodeManagerAddress", "") for node in ray.nodes()]
        for where in [_host_of(gcs), *nodes]:
            if not ipaddress.ip_address(where).is_loopback:
                raise ConfigError(f"[compute] engine: the local Ray instance came up on {where}, not 127.0.0.1; "
                                  "refusing to run a party's engine on a non-loopback interface")

    def put(self, data: Any) -> Any:
        return self._ray.put(data)

    def map_blocks(self, fn: Callable[..., R], data: Any, blocks: Sequence[tuple[int, int]], *args: Any) -> list[R]:
        if not blocks:
            return []
        ray = self._ray
        ref = data if isinstance(data, ray.ObjectRef) else ray.put(data)
        # Arguments go to the object store once per call, not once per block.
        shared = [a if isinstance(a, ray.ObjectRef) or len(blocks) == 1 else ray.put(a) for a in args]
        refs = [self._remote.remote(fn, ref, start, stop, *shared) for start, stop in blocks]
        results: list[R] = []
        for index, (block_ref, (start, stop)) in enumerate(zip(refs, blocks, strict=True)):
            try:
                results.append(ray.get(block_ref))  # in submission order: block order, whatever finished first
            except Exception as exc:
                for rest in refs[index + 1:]:
                    ray.cancel(rest)
                raise _block_error(ray, exc, index, start, stop) from None
        return results

    def close(self) -> None:
        """Stop the Ray runtime (a local instance's processes too), restore the environment, remove scratch."""
        ray = getattr(self, "_ray", None)
        if ray is not None and ray.is_initialized():
            ray.shutdown()
        self._ray = None
        if self._cluster_switch is not None:
            from ray._private import ray_constants

            ray_constants.ENABLE_RAY_CLUSTER = self._cluster_switch
            self._cluster_switch = None
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        self._saved_env = {}
        if self._auth_set:
            _reload_auth()  # before the token file goes: a draining gRPC thread must not look for it
            self._auth_set = False
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None

    def __enter__(self) -> RayEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _reload_auth() -> None:
    """Make Ray's cached auth mode and token follow the environment (Ray reads both once per process)."""
    from ray._raylet import AuthenticationTokenLoader, Config  # type: ignore[attr-defined]

    Config.initialize("")
    AuthenticationTokenLoader.instance().reset_cache()


def _block_error(ray: Any, exc: Exception, index: int, start: int, stop: int) -> Exception:
    """What a failed block raises on the driver: the block's own error, as `LocalEngine` raises it, or a short,
    data-free PartyError for anything Ray wrapped (its text may quote a remote traceback or the host's process
    list, and a party's error reply carries ``str(exc)``); Ray's detail goes to the party's own log only."""
    cause = getattr(exc, "cause", None) if isinstance(exc, ray.exceptions.RayTaskError) else None
    if isinstance(cause, Exception) and not type(cause).__module__.startswith("ray"):
        return cause
    _log.error("engine block %d [%d, %d) failed: %s", index, start, stop, exc)
    if isinstance(exc, ray.exceptions.OutOfMemoryError):
        what = "ran out of memory"
    elif isinstance(exc, ray.exceptions.RayTaskError | ray.exceptions.UnserializableException):
        what = "raised an error that could not be brought back from its worker"
    else:
        what = f"failed ({type(exc).__name__})"
    return PartyError(f"the compute engine {what} on block {index} (rows {start}..{stop}); details in the "
                      "party's own log")
