"""A synthetic Evaluation for the report tests: every verdict, plots of every kind, hostile strings."""

from __future__ import annotations

from sampan.verify.results import Evaluation, Outcome, Plot, TargetInfo, Threshold

HOSTILE = '<script>alert("x")</script> & \x00\x1b"quoted" </pre></td>'


def synthetic(platform: str = "weak", *, verdicts: dict[str, str] | None = None, auc: float = 0.74) -> Evaluation:
    v = {"F-API-VERSION": "pass", "F-AUC-HORIZONTAL": "pass", "P-BYTES-PER-ROUND": "pass",
         "S-SECAGG-MASKED": "fail", "S-MIA": "skip", "S-TLS-WRONG-CA": "error", **(verdicts or {})}
    outcomes = [
        Outcome("F-API-VERSION", "API version", "functional", v["F-API-VERSION"], "1.0 matches",
                Threshold("major version equals 1", "1", "", "issue 16"), seconds=0.12),
        Outcome("F-AUC-HORIZONTAL", "Horizontal AUC vs pooled", "functional", v["F-AUC-HORIZONTAL"],
                "AUC within margin", Threshold("auc >= pooled - margin", 0.02, "AUC", "pooled baseline"),
                figures={"auc": auc, "pooled_auc": 0.75, "nan_figure": None},
                evidence={"thresholds": {"auc_margin": {"rule": "auc >= pooled - margin", "value": 0.02,
                                                        "unit": "AUC", "source": "pooled baseline"},
                                         "rounds": {"rule": "rounds of the job", "value": 10, "unit": "rounds",
                                                    "source": "task spec"}}},
                pass_rule="final AUC on the verifier's holdout within the margin of pooled training",
                inputs="German credit, 3 IID parties, 10 rounds",
                plots=[Plot("line", "AUC per round", {"platform": [(1, 0.6), (2, 0.7), (3, auc)]},
                            "Round", "AUC")], seconds=3.5),
        Outcome("P-BYTES-PER-ROUND", "Bytes per round", "performance", v["P-BYTES-PER-ROUND"],
                figures={"bytes_per_round": 123456.0},
                plots=[Plot("bar", "Bytes per party", {"bank_a": [(0, 1000.0)], "bank_b": [(0, 2000.0)]},
                            y_label="bytes")], seconds=1.0),
        Outcome("S-SECAGG-MASKED", "Updates masked under secure aggregation", "security", v["S-SECAGG-MASKED"],
                HOSTILE, Threshold(HOSTILE, HOSTILE, "", HOSTILE), figures={HOSTILE: 1.0},
                evidence={"sent": [0.1, 0.2], HOSTILE: HOSTILE}, claim="secure_aggregation", seconds=2.0),
        Outcome("S-MIA", "Membership inference", "security", v["S-MIA"], "capability dp absent",
                plots=[Plot("roc", "MIA ROC", {"attack": [(0.0, 0.0), (0.5, 0.6), (1.0, 1.0)]})], claim="dp"),
        Outcome("S-TLS-WRONG-CA", "Wrong CA refused", "security", v["S-TLS-WRONG-CA"], "timeout after 30 s",
                claim="mtls", seconds=30.0),
    ]
    return Evaluation(
        target=TargetInfo("https://127.0.0.1:8443/bench/v1", platform, "0.1", "1.0", ["horizontal"],
                          {"secure_aggregation": True, "dp": {"epsilon": 1.0, "delta": 1e-5, "level": "record"},
                           "mtls": False, "psi": False}),
        profile="quick", started="2026-12-07T16:00:00+00:00", finished="2026-12-07T16:01:30+00:00",
        outcomes=outcomes, manifest={"seed": 42, "columns": {"german": ["age", "duration"]}, "note": HOSTILE},
    )
