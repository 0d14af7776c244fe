"""Diagnose S-BACKDOOR under Krum (issue 16, helper BD): which update Krum picks in each round of each robust job.

Runs `sampan verify local --platform sampan --only S-BACKDOOR` in this process (the deployed coordinator and agents
are threads here too) with `Krum._result` wrapped to record, per call: the parties' weights (row counts), each
update's norm, the Krum scores, and the indices chosen (parties in name order: bank_a, bank_b, bank_c, bank_d,
bank_e; index 2 is the verifier's party, the attacker, recognisable by its ~120 training rows). Calls 0-4 are the
backdoor job, 5-9 the clean five-party reference (since R-LAST-1 there is no platform-run four-party job: the
verifier fits its other references itself; runs saved before that carry calls 10-14, which are summarised too).

``--decoy``: the attacker sends g - gamma * (X - g), as far from the global as the model replacement but pointing
*away* from the backdoored model X: no backdoor in it. Whatever "attack success" remains is honest-model variation.
``--multi K``: a what-if (not Sampan's behaviour): Krum averages the n - K best-scored updates (Multi-Krum).
Without ``--multi`` the wrapper calls Sampan's real `_result` and returns its value unchanged.

    .venv/bin/python bench/backdoor_krum_diag.py --seed 2026 --deployed [--decoy] [--multi 1] [--out run.json]
    .venv/bin/python bench/backdoor_krum_diag.py --summarise '/tmp/bd/dep*.json'
"""

from __future__ import annotations

import argparse
import json
import threading
from pathlib import Path
from typing import Any

import numpy as np

from sampan.horizontal import aggregators

CALLS: list[dict[str, Any]] = []
_LOCK = threading.Lock()
_real_result = aggregators.Krum._result


def _logged_result(self: aggregators.Krum) -> np.ndarray:
    stacked = self._stack()
    n = len(stacked)
    if self.multi < 0:  # --multi what-if: average the n - k best-scored updates
        self.multi = n + self.multi
    neighbours = n - self.byzantine - 2
    sq = np.sum(stacked**2, axis=1)
    dist = np.maximum(sq[:, None] + sq[None, :] - 2 * stacked @ stacked.T, 0.0)
    np.fill_diagonal(dist, np.inf)
    scores = np.sort(dist, axis=1)[:, :max(neighbours, 1)].sum(axis=1)
    out = _real_result(self)
    order = np.argsort(scores, kind="stable")
    chosen = sorted(int(i) for i in order[: self.multi])
    with _LOCK:
        CALLS.append({"thread": threading.current_thread().name, "n": n, "byzantine": self.byzantine,
                      "multi": self.multi, "neighbours": neighbours, "weights": list(map(float, self._weights)),
                      "norms": [float(np.linalg.norm(u)) for u in stacked], "scores": list(map(float, scores)),
                      "chosen": chosen,
                      "dist_to_nearest": [float(np.min(d)) for d in dist],
                      "updates": stacked.tolist()})
    return out


def summarise(pattern: str) -> None:
    """One line per saved run: attack success, the index Krum chose per round in each job, the attacker's margin."""
    import glob

    rates = []
    for f in sorted(glob.glob(pattern)):
        d = json.loads(Path(f).read_text())
        c, fig, att = d["calls"], d["figures"], 2
        jobs = {"backdoor": c[0:5], "clean": c[5:10], **({"four": c[10:15]} if len(c) >= 15 else {})}
        ratio = min(x["scores"][att] / max(s for i, s in enumerate(x["scores"]) if i != att) for x in jobs["backdoor"])
        norm = [x["norms"][att] / float(np.median([v for i, v in enumerate(x["norms"]) if i != att]))
                for x in jobs["backdoor"]]
        picked = {k: ["".join(map(str, x["chosen"])) for x in v] for k, v in jobs.items()}
        rates.append(fig["attack_success_rate"])
        disagreement = fig.get("honest_disagreement", float("nan"))
        print(f"{Path(f).name}: ASR {fig['attack_success_rate']:.3f} on {fig['trigger_rows']:.0f} rows, honest "
              f"disagreement {disagreement:.3f}; chosen {picked}; attacker score >= {ratio:.0f}x the "
              f"worst honest, norm x{min(norm):.0f}-{max(norm):.0f}; attacker chosen: "
              f"{any(att in x['chosen'] for x in jobs['backdoor'])}")
    if rates:
        print(f"{len(rates)} runs: mean {np.mean(rates):.3f}, max {max(rates):.3f}, over 0.20: "
              f"{sum(r > 0.2 for r in rates)}")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--summarise", metavar="GLOB", help="summarise saved runs instead of running one")
    p.add_argument("--seed", type=int, default=2026)
    p.add_argument("--deployed", action="store_true")
    p.add_argument("--decoy", action="store_true")
    p.add_argument("--out", type=Path, default=Path("/tmp/bd/diag.json"))
    p.add_argument("--multi", type=int, default=0, help="what-if: Multi-Krum averaging the n - MULTI best updates "
                   "(e.g. 1: n - f with f = 1) instead of Sampan's configured single update; 0 leaves Sampan as is")
    a = p.parse_args()
    if a.summarise:
        summarise(a.summarise)
        return
    a.out.parent.mkdir(parents=True, exist_ok=True)
    if a.multi:
        real_init = aggregators.Krum.__init__

        def multi_init(self: aggregators.Krum, byzantine: int = 1, multi: int = 1) -> None:
            real_init(self, byzantine, multi)
            self.multi = -a.multi  # resolved per call: n - a.multi

        aggregators.Krum.__init__ = multi_init  # type: ignore[method-assign]
    aggregators.Krum._result = _logged_result  # type: ignore[method-assign]
    if a.decoy:
        from sampan.audit import byzantine as byz

        def decoy(global_model: Any, backdoor_model: Any, n: int, eta: float = 1.0) -> np.ndarray:
            # as far from the global as the replacement, pointing along the honest backdoor-free direction: the
            # attacker's own rows fitted without triggered copies are not at hand here, so flip the backdoor change
            g, x = np.asarray(global_model, float), np.asarray(backdoor_model, float)
            return np.asarray(g - (n / eta) * (x - g))

        byz.model_replacement_backdoor = decoy
    from sampan.cli.verify import local

    out_dir = a.out.parent / (a.out.stem + "-eval")
    try:
        local(platform="sampan", tls=None, profile="standard", out=out_dir, seed=a.seed, only=["S-BACKDOOR"],
              manifest=None, pdf=False, strict=False, quiet=True, deployed=a.deployed)
    except SystemExit:
        pass
    res = json.loads((out_dir / "results.json").read_text())
    bd = next(o for o in res["outcomes"] if o["id"] == "S-BACKDOOR")
    a.out.write_text(json.dumps({"args": {k: str(v) for k, v in vars(a).items()}, "figures": bd["figures"],
                                 "message": bd["message"], "calls": CALLS}, indent=1))
    print(bd["verdict"], bd["message"], json.dumps(bd["figures"]))
    for c in CALLS:
        print(f"n={c['n']} nb={c['neighbours']} w={[int(w) for w in c['weights']]} chosen={c['chosen']} "
              f"norms={[round(x, 3) for x in c['norms']]} scores={[round(x, 3) for x in c['scores']]}")


if __name__ == "__main__":
    main()
