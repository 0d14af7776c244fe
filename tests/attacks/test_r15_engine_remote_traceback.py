"""R15-ENGINE-8: a block error that does not survive pickling reaches the coordinator as Ray's remote traceback.

Attack / leak: `RayEngine.map_blocks` unwraps ``RayTaskError`` to ``exc.cause`` so that "a party's error reply
must not carry a remote traceback (it may quote data)". But when the block's exception cannot be rebuilt on the
driver (any exception class whose ``__init__`` takes other arguments than its message: a common pattern,
e.g. ``BadValue(column, value)``), Ray raises ``UnserializableException`` instead, and its text is
"Failed to deserialize exception ... Original exception: ray.exceptions.RayTaskError: ray::_call_block() (pid=...,
ip=...) File ".../ray_engine.py", line ..., ...": the remote traceback, with source lines, paths, worker pid and
node address. The party's ``Message.error_reply`` sends ``str(exc)`` to the coordinator.

Expected safe behaviour: whatever Ray wraps, the engine raises an error without a remote traceback (the
block's own message, or a short "a block failed on the engine: <type>"), as `LocalEngine` would.
Fixed: anything Ray wraps becomes a short PartyError naming the block; Ray's text goes to the party's own log.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

PARTY = r'''
import json
import numpy as np
from sampan.compute.ray_engine import RayEngine
from sampan.wire import Message

class BadValue(ValueError):
    def __init__(self, column, value):
        super().__init__(f"column {column} holds a value out of range")

def block(data, start, stop):
    raise BadValue("income", float(data[start]))

eng = RayEngine(num_workers=1)
try:
    eng.map_blocks(block, eng.put(np.array([4242.5])), [(0, 1)])
    print(json.dumps({"error": None}))
except Exception as exc:
    print(json.dumps(Message("r", 0, "coordinator", "bank", "fit").error_reply(exc).meta))
finally:
    eng.close()
'''


@pytest.mark.slow
def test_a_block_error_never_carries_the_remote_traceback() -> None:
    pytest.importorskip("ray")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    out = subprocess.run([sys.executable, "-c", PARTY], capture_output=True, text=True, env=env, timeout=240)
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    if not lines or json.loads(lines[-1]).get("error") is None:
        pytest.fail(f"the block did not fail as planned: {out.stdout[-500:]} {out.stderr[-1500:]}")
    text = json.loads(lines[-1])["error"]
    assert 'File "' not in text and "Traceback" not in text and "_call_block" not in text, \
        f"the error reply carries the remote traceback: {text[:600]}"
    meta = json.loads(lines[-1])
    assert meta["error_type"] == "PartyError" and "block 0" in text, meta
