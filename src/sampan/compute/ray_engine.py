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
* results come back in block order (`ray.get` of the refs in submission order), so `reduce_in_order` gives
  the same bytes as `LocalEngine`.

Ray is imported here only, lazily: core Sampan never needs it.
"""

from __future__ import annotations

import atexit
import ipaddress
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from sampan.compute.engine_tls import EngineTLS, issue_engine_certs, load_engine_tls
from sampan.errors import ConfigError

__all__ = ["RayEngine", "check_private_address", "check_tls_off_allowed", "import_ray"]

R = TypeVar("R")

_INSTALL_HINT = "the Ray compute engine needs the optional extra: pip install 'sampan[ray]'"
_ENV_FIXED = {
    "RAY_USAGE_STATS_ENABLED": "0",  # no usage statistics leave the party
    "RAY_DISABLE_IMPORT_WARNING": "1",
}


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
        folder = Path(tempfile.mkdtemp(prefix="sampan-ray-tls-"))
        atexit.register(shutil.rmtree, folder, True)
        _EPHEMERAL["process"] = issue_engine_certs(folder / "tls", party=party)
    return _EPHEMERAL["process"]


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
        if address is not None and tls and tls_dir is None:
            raise ConfigError("[compute] tls_dir: a Ray cluster address with TLS needs the folder of the party's "
                              "engine certificates (the ones its cluster nodes were started with)")
        self.address = address
        self.num_workers = num_workers
        self._scratch: Path | None = None
        self._saved_env: dict[str, str | None] = {}
        self.tls: EngineTLS | None = None
        ray = import_ray()
        if ray.is_initialized():
            raise ConfigError("a Ray runtime is already running in this process; one RayEngine per party process")
        self._ray: Any = ray
        self._cluster_switch: bool | None = None
        try:
            self._scratch = Path(tempfile.mkdtemp(prefix="sampan-ray-"))  # 0700: Ray's sockets and logs
            if tls:
                self.tls = load_engine_tls(tls_dir) if tls_dir is not None else _ephemeral_tls(party)
            env = dict(_ENV_FIXED)
            if self.tls is not None:
                env.update(self.tls.environment())
            one_machine = address is None or ipaddress.ip_address(_host_of(address)).is_loopback
            if one_machine:
                # Ray advertises (and binds) the node's address and rewrites 127.0.0.1 to the primary interface's
                # unless this switch says "one machine", which makes every Ray server and client use 127.0.0.1.
                env["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
            self._set_env(env)
            if one_machine:
                from ray._private import ray_constants  # the switch is read once, at Ray's import

                self._cluster_switch = ray_constants.ENABLE_RAY_CLUSTER
                ray_constants.ENABLE_RAY_CLUSTER = False
            if address is None:
                ray.init(num_cpus=num_workers, include_dashboard=False, _node_ip_address="127.0.0.1",
                         _temp_dir=str(self._scratch), logging_level="ERROR", log_to_driver=False,
                         namespace="sampan")
                self._check_loopback(ray)
            else:
                ray.init(address=address, logging_level="ERROR", log_to_driver=False, namespace="sampan")
            self._remote = ray.remote(num_cpus=1)(_call_block)
        except BaseException:
            self.close()
            raise

    def _set_env(self, env: dict[str, str]) -> None:
        for key, value in env.items():
            self._saved_env.setdefault(key, os.environ.get(key))
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
        try:
            return list(ray.get(refs))  # in submission order: block order, whatever finished first
        except ray.exceptions.RayTaskError as exc:
            # The block's own error, as LocalEngine raises it: Ray's wrapper text quotes a remote traceback, and a
            # party's error reply must not carry one (it may quote data).
            cause = getattr(exc, "cause", None)
            if isinstance(cause, Exception):
                raise cause from None
            raise

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
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None

    def __enter__(self) -> RayEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
