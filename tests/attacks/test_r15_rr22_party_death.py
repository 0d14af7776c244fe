"""R15-RR22-7: when the party process dies mid-run, its spu worker lives on and the side file of ids stays.

Attack / failure: the party process is killed (OOM killer, SIGKILL by an operator, a crash) while an RR22
session runs; or the party host reboots mid-run. The worker was started with ``start_new_session=True``
(psi_rr22_party.py:275) and nothing ties its life to the party's (no parent-death signal, no pipe it watches),
and cleanup lives only in the party's memory (`_Rr22Session.close`, the Timer). So the worker keeps running,
keeps its 127.0.0.1 port open and keeps dialling (spu retries for a minute, then waits up to its 10-minute recv
timeout), and the 0700 dir ``sampan-rr22-*`` with every id of the party in hex stays on disk for good: nothing
sweeps it at the next start. (The brief notes workers left behind by earlier runs at 13:16.)

Expected safe behaviour: the worker dies with the party process (e.g. PR_SET_PDEATHSIG via a preexec hook, or
the worker exits when its stdin pipe from the party closes), and stale ``sampan-rr22-*`` dirs of dead parties
are removed when a party starts (or the ids file is unlinked as soon as spu has read it).
Fixed: the worker's stdin is a pipe from the party; when it closes the worker removes its folder and exits; a
party's start also sweeps `sampan-rr22-*` folders whose `party.pid` is dead.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HAS_SPU = (ROOT / ".venv-spu" / "bin" / "python").is_file()

PARTY = r'''
import json, os, sys, tempfile
import numpy as np
tempfile.tempdir = sys.argv[1]
from sampan.core.party import PartyApp
from sampan.crypto.channel import PartyKeys, SealedChannels
from sampan.transport.inprocess import InProcessTransport
from sampan.vertical.psi_party import PsiParty
from sampan.vertical.psi_rr22_party import register_rr22
from sampan.wire import Message
ids = [f"BR{i:08d}" for i in range(500)]
parties = {"bank": PsiParty("bank", np.array(ids[:300], dtype=object)),
           "pay": PsiParty("pay", np.array(ids[200:], dtype=object))}
keys = {n: PartyKeys.generate() for n in parties}
public = {n: k.public_bytes for n, k in keys.items()}
apps, handlers = {}, {}
for name, party in parties.items():
    app = PartyApp(name)
    party.register(app)
    handlers[name] = register_rr22(party, app)
    party.channels = SealedChannels(name, keys[name], public, "run-r15",
                                    roles={"bank": "label_holder", "pay": "partner"})
    apps[name] = app
t = InProcessTransport(apps)
meta = {"mode": "both", "check_format": True, "timeout": 60.0}
offer = next(iter(t.exchange([Message("run-r15", 0, "c", "bank", "psi.rr22.offer", {}, {**meta, "peer": "pay"})])))
next(iter(t.exchange([Message("run-r15", 0, "c", "pay", "psi.rr22.accept", {"envelope": offer.arrays["envelope"]},
                               {**meta, "peer": "bank"})])))
s = handlers["pay"].sessions["bank"]
print(json.dumps({"pid": s.process.pid, "dir": str(s.directory)}), flush=True)
os._exit(0)  # the party process dies here (as under SIGKILL: no finally, no atexit)
'''


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").is_dir() and "Z" not in Path(f"/proc/{pid}/stat").read_text().split()[2]


@pytest.mark.skipif(not HAS_SPU, reason="spu venv missing: tools/install_spu.sh")
def test_nothing_outlives_a_dead_party(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-c", PARTY, str(tmp_path)], capture_output=True, timeout=60,
                         cwd=ROOT, check=True)
    info = json.loads(out.stdout.decode().strip().splitlines()[-1])
    try:
        time.sleep(3)
        alive = _alive(int(info["pid"]))
        left = (Path(info["dir"]) / "ids.csv").is_file()
        assert not alive and not left, f"worker alive={alive}, ids side file left={left}"
    finally:
        try:
            os.killpg(int(info["pid"]), signal.SIGKILL)
        except OSError:
            pass
        shutil.rmtree(info["dir"], ignore_errors=True)


def test_a_party_start_sweeps_folders_of_dead_parties(tmp_path: Path) -> None:
    """A host that rebooted mid-run leaves no worker but may leave the folder: the next party start removes it."""
    from sampan.vertical.psi_rr22_local import sweep_stale

    gone = subprocess.Popen(["true"])  # noqa: S607
    gone.wait()
    stale, live = tmp_path / "sampan-rr22-stale", tmp_path / "sampan-rr22-live"
    for folder, pid in ((stale, gone.pid), (live, os.getpid())):
        folder.mkdir(mode=0o700)
        (folder / "party.pid").write_text(str(pid))
        (folder / "ids.csv").write_text("id\n4252\n")
    assert sweep_stale(str(tmp_path)) == [stale]
    assert not stale.exists() and (live / "ids.csv").is_file()
