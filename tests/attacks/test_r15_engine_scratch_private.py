"""R15-ENGINE-3: the engine's scratch folder ("0700: Ray's sockets and logs") is 0777 once Ray has started.

Attack: another local user of a party host. `RayEngine` makes its scratch with ``mkdtemp`` (0700) and hands it
to ``ray.init(_temp_dir=...)``; Ray chmods its temp folder and every session folder under it to 0777 (no sticky
bit): the folder itself, ``session_*``, ``session_*/sockets`` (the raylet's and the object store's Unix sockets),
``logs`` and ``runtime_resources``. Anyone may then rename or unlink the raylet/plasma socket names and put
their own listener in their place (workers the engine spawns later dial it and trade task specs and object
buffers with it), swap ``session_latest``, or plant files in ``runtime_resources``; the logs there are 0644.

Expected safe behaviour: the engine's folders stay private to the party's user for the engine's whole life
(no folder under the scratch writable by group or others), as the comment in ray_engine.py says.
Fixed: Ray's temp folder sits inside the engine's own 0700 folder, and every folder under it is chmodded back to
owner-only after start.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

PARTY = r'''
import json, os, stat, sys
import numpy as np
from sampan.compute.ray_engine import RayEngine

def block(data, start, stop):
    return float(data[start:stop].sum())

eng = RayEngine(num_workers=1)
eng.map_blocks(block, eng.put(np.ones(4)), [(0, 2), (2, 4)])  # workers are up
modes = {}
for folder, dirs, _ in os.walk(eng._scratch):
    for name in [folder, *[os.path.join(folder, d) for d in dirs]]:
        if not os.path.islink(name):  # a link's own mode is always 0777
            modes[name] = stat.S_IMODE(os.lstat(name).st_mode)
print(json.dumps(modes))
eng.close()
'''


@pytest.mark.slow
def test_the_engines_folders_stay_private() -> None:
    pytest.importorskip("ray")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    out = subprocess.run([sys.executable, "-c", PARTY], capture_output=True, text=True, env=env, timeout=240)
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    if not lines:
        pytest.fail(out.stderr[-2000:])
    modes: dict[str, int] = json.loads(lines[-1])
    if not any(path.endswith("/sockets") for path in modes):
        pytest.fail("found no sockets folder: the engine did not start")
    open_to_others = {path: f"{mode:04o}" for path, mode in modes.items() if mode & 0o022}
    assert not open_to_others, f"engine folders other users may write to: {open_to_others}"
