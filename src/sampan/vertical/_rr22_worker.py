"""One party's side of RR22 PSI through SecretFlow spu, run as a subprocess in spu's own venv (`.venv-spu`).

Why a script: spu pins jax and numpy < 2 and weighs ~1 GB, so it never enters Sampan's venv. Sampan runs this
file by path with `.venv-spu/bin/python`; it imports only spu and the standard library, and is never imported by
Sampan itself. Its link (yacl/brpc) listens on 127.0.0.1 only and dials the peer at a 127.0.0.1 address that is
a Sampan tunnel endpoint in the same party (`sampan.vertical.psi_rr22_tunnel`), so the party still only dials
out. Usage: ``python _rr22_worker.py CONFIG.json`` (a file in the party's private 0700 temp dir); it writes
spu's output CSV and a JSON report next to it and exits 0, or prints one error line and exits non-zero. Its
stdin is a pipe from the party: when it closes, the worker removes its folder and exits (it dies with the party).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import threading
import time


def _die_with_party(directory: str) -> None:
    """Block on stdin, a pipe from the party; when it closes (the party exited, or was killed), remove this run's
    private folder (the ids) and exit at once: nothing of the run outlives the party (review R15-RR22-7)."""
    while True:  # a raw read: no buffered stdin lock for the interpreter's shutdown to trip over
        try:
            if not os.read(0, 4096):
                break
        except InterruptedError:
            continue
        except OSError:
            break
    shutil.rmtree(directory, ignore_errors=True)
    os._exit(3)


def main(config_path: str) -> int:
    threading.Thread(target=_die_with_party, args=(os.path.dirname(os.path.abspath(config_path)),),
                     daemon=True).start()
    with open(config_path, encoding="utf-8") as handle:
        config = json.load(handle)
    from spu import psi  # type: ignore[import-not-found]
    from spu.libspu import link  # type: ignore[import-not-found]

    rank = int(config["rank"])
    desc = link.Desc()
    desc.id = str(config["link_id"])
    for party_id, host in config["parties"]:
        desc.add_party(str(party_id), str(host))
    desc.recv_timeout_ms = int(config.get("recv_timeout_ms", 600_000))
    desc.http_timeout_ms = int(config.get("http_timeout_ms", 600_000))
    desc.connect_retry_times = int(config.get("connect_retry_times", 120))
    desc.connect_retry_interval_ms = int(config.get("connect_retry_interval_ms", 500))
    desc.http_max_payload_size = int(config.get("http_max_payload_size", 32 << 20))
    desc.brpc_channel_protocol = "baidu_std"
    desc.throttle_window_size = int(config.get("throttle_window_size", 64))
    started = time.perf_counter()
    lctx = link.create_brpc(desc, rank)
    execute = psi.PsiExecuteConfig(
        protocol_conf=psi.PsiProtocolConfig(
            protocol=psi.PsiProtocol.PROTOCOL_RR22, receiver_rank=int(config["receiver_rank"]),
            broadcast_result=bool(config["broadcast_result"]),
            rr22_params=psi.Rr22Rarams(low_comm_mode=bool(config.get("low_comm_mode", False)))),
        input_params=psi.InputParams(path=str(config["input"]), selected_keys=[str(config["key"])], keys_unique=True),
        output_params=psi.OutputParams(path=str(config["output"]), disable_alignment=False),
    )
    report = psi.psi_execute(execute, lctx)
    lctx.stop_link()
    with open(str(config["report"]) + ".part", "w", encoding="utf-8") as handle:
        json.dump({"original": int(report.original_count), "intersection": int(report.intersection_count),
                   "seconds": time.perf_counter() - started}, handle)
    os.replace(str(config["report"]) + ".part", str(config["report"]))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1]))
    except Exception as exc:  # one line for the party's error, never a traceback with ids
        print(f"rr22 worker failed: {type(exc).__name__}: {str(exc)[:500]}", file=sys.stderr)
        sys.exit(2)
