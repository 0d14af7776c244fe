"""R15-ENGINE-7: a party process killed with its engine leaves the engine's folders (node key, logs) for good.

Failure / attack: the agent is SIGKILLed (OOM killer, an operator, a crash) while its Ray engine runs. Ray's
processes die with it (held), but the ephemeral engine TLS folder (``sampan-ray-tls-*``: ``node.key`` and the
certificates; removed only by ``atexit``) and the scratch (``sampan-ray-*``: Ray's session, 0777 folders with
0644 logs of every task; removed only by ``close``) stay in /tmp, and nothing removes them at the next start:
every crash adds a set, readable (logs) and writable (folders) by other local users.

Expected safe behaviour: a new engine (or agent start) removes the folders of engines whose process is gone,
or the engine keeps them where a dead process's files cannot outlive it.
Fixed: the engine's folders are named by the owning pid, and every engine start removes this user's folders whose
process is gone.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

PARTY = r'''
import json, sys
from sampan.compute.ray_engine import RayEngine
eng = RayEngine(num_workers=1)
print(json.dumps({"scratch": str(eng._scratch), "tls": str(eng.tls.key.parent.parent)}), flush=True)
if sys.argv[1] == "wait":
    sys.stdin.readline()
eng.close()
'''


@pytest.mark.slow
def test_a_killed_partys_engine_folders_do_not_outlive_it() -> None:
    pytest.importorskip("ray")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    first = subprocess.Popen([sys.executable, "-c", PARTY, "wait"], env=env, stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = first.stdout.readline() if first.stdout else ""
    if not line:
        first.kill()
        pytest.fail("the first engine did not start")
    folders = json.loads(line)
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    second = subprocess.run([sys.executable, "-c", PARTY, "once"], env=env, capture_output=True, text=True,
                            timeout=240)
    if second.returncode != 0:
        pytest.fail(second.stderr[-2000:])
    left = [path for path in folders.values() if Path(path).exists()]
    try:
        assert not left, f"the killed engine's folders outlive it: {left}"
    finally:
        for path in left:  # the test's own leftovers
            subprocess.run(["rm", "-rf", path], check=False)
