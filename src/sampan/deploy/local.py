"""A whole federation on one machine: certificates, configs and agent processes over loopback.

For trying a deployment, for tests and for benchmarks. Every organisation gets its own folder with
its own key (made in that folder), certificate and config, exactly as it would on its own machine;
the agents are separate processes (`python -m sampan.cli.deploy ...`).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sampan.deploy.certs import create_request, init_ca, sign_request

__all__ = [
    "Binding",
    "FederationFiles",
    "write_federation",
    "free_port",
    "Agent",
    "toml_dumps",
    "wait_for_log",
    "TcpRecorder",
]


@dataclass(frozen=True)
class Binding:
    """One dataset of a party: file, format and schema (as in party.toml's [data.<name>])."""

    path: str
    schema: Mapping[str, Any]
    format: str | None = None


@dataclass
class FederationFiles:
    root: Path
    port: int
    coordinator_config: Path
    party_configs: dict[str, Path]
    ca_dir: Path
    operator: dict[str, Path] = field(default_factory=dict)  # ca, cert, key of the operator

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{json.dumps(str(k))} = {_toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


def toml_dumps(data: Mapping[str, Any]) -> str:
    """Just enough TOML for these configs: tables, arrays of tables, inline values."""
    lines: list[str] = []

    def table(prefix: str, body: Mapping[str, Any]) -> None:
        scalars = {
            k: v
            for k, v in body.items()
            if not isinstance(v, Mapping) and not (isinstance(v, list) and v and all(isinstance(i, Mapping) for i in v))
        }
        if prefix:
            lines.append(f"[{prefix}]")
        lines.extend(
            f"{json.dumps(k) if not k.replace('_', '').isalnum() else k} = {_toml_value(v)}"
            for k, v in scalars.items()
            if v is not None
        )
        lines.append("")
        for k, v in body.items():
            if isinstance(v, Mapping):
                table(f"{prefix}.{k}" if prefix else k, v)
            elif isinstance(v, list) and v and all(isinstance(i, Mapping) for i in v):
                for item in v:
                    lines.append(f"[[{prefix + '.' if prefix else ''}{k}]]")
                    lines.extend(f"{ik} = {_toml_value(iv)}" for ik, iv in item.items() if iv is not None)
                    lines.append("")

    table("", data)
    return "\n".join(lines)


def _with_label_holders(section: Mapping[str, Any], labelled: list[str]) -> dict[str, Any]:
    """A test federation's `[allow]`: vertical partners listed and no label holders named -> its labelled parties."""
    out = dict(section)
    if "partners" in out and "label_holders" not in out:
        out["label_holders"] = labelled
    return out


def write_federation(
    root: str | Path,
    parties: Mapping[str, Mapping[str, Binding]],
    *,
    port: int | None = None,
    operators: Sequence[str] = ("ops",),
    coordinator: Mapping[str, Any] | None = None,
    party: Mapping[str, Any] | None = None,
    dial: Mapping[str, str] | None = None,
    spare: Sequence[str] = (),
    allow: Mapping[str, Mapping[str, Any]] | None = None,
) -> FederationFiles:
    """CA, every member's key/CSR/certificate in its own folder, coordinator.toml and one party.toml each.

    `dial` overrides the address a party dials (e.g. a `TcpRecorder`); `spare` names extra party
    members that get a certificate but no agent (for tests that speak the protocol by hand); `allow`
    gives a party's `[allow]` section (without one, it joins no vertical run; one that lists vertical
    partners but no `label_holders` gets this federation's labelled parties). The coordinator takes
    its members' pins from the CA's signed issuance record (`tls.issued`).
    """
    root = Path(root)
    port = port or free_port()
    ca = init_ca(root / "ca", force=True)
    folder = root / "coordinator"
    _, csr = create_request("coordinator", "coordinator", folder, dns=["localhost"], ips=["127.0.0.1"])
    sign_request(csr, ca.directory)
    coordinator_toml = {
        "coordinator": {
            "name": "coordinator",
            "listen": f"127.0.0.1:{port}",
            "state_dir": "state",
            "report_dir": "reports",
            "log_file": "coordinator.log",
            **(coordinator or {}),
        },
        "tls": {
            "ca": "../ca/ca.crt",
            "cert": "coordinator.crt",
            "key": "coordinator.key",
            "crl": "../ca/crl.pem",
            "issued": "../ca/issued.json",
        },
        "members": [{"name": n, "role": "party"} for n in [*parties, *spare]]
        + [{"name": o, "role": "operator"} for o in operators],
    }
    (folder / "coordinator.toml").write_text(toml_dumps(coordinator_toml))
    configs: dict[str, Path] = {}
    labelled = sorted(n for n, ds in parties.items() if any(b.schema.get("label") for b in ds.values()))
    for name, datasets in parties.items():
        pf = root / name
        _, csr = create_request(name, "party", pf)
        sign_request(csr, ca.directory)
        data = {
            ds: {
                "path": str(Path(b.path).resolve()),
                **({"format": b.format} if b.format else {}),
                "schema": dict(b.schema),
            }
            for ds, b in datasets.items()
        }
        party_toml = {
            "party": {
                "name": name,
                "coordinator": (dial or {}).get(name, f"127.0.0.1:{port}"),
                "server_name": "localhost",
                "state_dir": "state",
                "log_file": "party.log",
                "backoff_initial_s": 0.2,
                "backoff_max_s": 2.0,
                **(party or {}),
            },
            "tls": {"ca": "../ca/ca.crt", "cert": f"{name}.crt", "key": f"{name}.key", "crl": "../ca/crl.pem"},
            "data": data,
            **({"allow": _with_label_holders(allow[name], labelled)} if allow and name in allow else {}),
        }
        configs[name] = pf / "party.toml"
        configs[name].write_text(toml_dumps(party_toml))
    for name in spare:
        _, csr = create_request(name, "party", root / name)
        sign_request(csr, ca.directory)
    files = FederationFiles(root, port, folder / "coordinator.toml", configs, ca.directory)
    for name in operators:
        of = root / name
        key, csr = create_request(name, "operator", of)
        cert = sign_request(csr, ca.directory)
        files.operator = {"ca": ca.cert, "cert": cert, "key": key}
    return files


class Agent:
    """One agent process (`python -m sampan.cli.deploy coordinator|party serve --config ...`)."""

    def __init__(
        self, role: str, config: Path, *, env: Mapping[str, str] | None = None, stdout: Path | None = None
    ) -> None:
        self.role, self.config = role, Path(config)
        self.out = Path(stdout) if stdout else self.config.parent / f"{role}.out"
        cmd = [sys.executable, "-m", "sampan.cli.deploy", role, "serve", "--config", str(self.config)]
        full_env = {**os.environ, **(env or {})}
        self._fh = open(self.out, "ab")
        self.proc = subprocess.Popen(
            cmd, stdout=self._fh, stderr=subprocess.STDOUT, env=full_env, cwd=self.config.parent
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 10.0) -> int | None:
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._fh.close()
        return self.proc.returncode

    def kill(self) -> None:
        if self.alive():
            self.proc.kill()
            self.proc.wait(5)
        self._fh.close()

    def wait(self, timeout: float) -> int | None:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None


def wait_for_log(path: Path, needle: str, timeout: float = 30.0, count: int = 1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text(errors="replace").count(needle) >= count:
            return True
        time.sleep(0.05)
    return False


class TcpRecorder:
    """A loopback TCP forwarder that records (or just counts) every byte each way, per connection.

    Point a party at it instead of the coordinator to capture exactly what crosses the network.
    """

    def __init__(self, target_port: int, *, record: bool = True, host: str = "127.0.0.1") -> None:
        import threading

        self.target = (host, target_port)
        self.record = record
        self.connections: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._listener = socket.create_server((host, 0))
        self.port = int(self._listener.getsockname()[1])
        self._closing = False
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, name="sampan-tcp-recorder", daemon=True).start()

    def _accept(self) -> None:
        import threading

        while not self._closing:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            conn: dict[str, Any] = {"up": bytearray(), "down": bytearray(), "up_bytes": 0, "down_bytes": 0}
            with self._lock:
                self.connections.append(conn)
                self._sockets += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, conn, "up"), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, conn, "down"), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, conn: dict[str, Any], direction: str) -> None:
        try:
            while True:
                chunk = src.recv(1 << 16)
                if not chunk:
                    break
                conn[f"{direction}_bytes"] += len(chunk)
                if self.record:
                    conn[direction] += chunk
                dst.sendall(chunk)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def total(self) -> tuple[int, int]:
        with self._lock:
            return (sum(c["up_bytes"] for c in self.connections), sum(c["down_bytes"] for c in self.connections))

    def captured(self) -> bytes:
        with self._lock:
            return b"".join(bytes(c["up"]) + bytes(c["down"]) for c in self.connections)

    def close(self) -> None:
        self._closing = True
        self._listener.close()
        with self._lock:
            for s in self._sockets:
                try:
                    s.close()
                except OSError:
                    pass
