"""Every pass threshold of the catalogue, as data, with its unit and where it comes from.

Fixed here, before any platform (Sampan included) is evaluated: a report prints each test's thresholds
beside its verdict, and the manifest records them, so a later change of a value is visible in a comparison.
Sources: "issue 16" (the issue's text fixes it), "task spec" (the task the verifier submits defines it),
"pooled baseline" (relative to plain LR on the pooled data, computed by the verifier per evaluation),
"CAICT method" (the national test method's rule), "project rule" (a Sampan-wide rule).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

__all__ = ["Threshold", "THRESHOLDS", "threshold", "value", "thresholds_table"]

Source = Literal["issue 16", "task spec", "pooled baseline", "CAICT method", "project rule"]


@dataclass(frozen=True)
class Threshold:
    """One number a pass rule compares against; ``rule`` says which way it cuts."""

    key: str
    value: float
    unit: str
    source: Source
    rule: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_ALL: tuple[Threshold, ...] = (
    # functional
    Threshold("agg_weighted_tol", 1e-6, "max |coefficient difference|", "issue 16",
              "one-round model is a weighted mean of the parties' one-step models to within this"),
    Threshold("agg_share_tol", 0.05, "weight", "task spec",
              "each party's weight in that mean within this of its row share (0.5/0.3/0.2; a plain mean is 1/3)"),
    Threshold("psi_missing_extra", 0, "ids", "issue 16",
              "intersection equals the plaintext intersection: no id missing, none extra"),
    Threshold("psi_id_excess_min", 0.25, "fraction of ids", "project rule",
              "S-PSI-LEAK: numeric ids in an integer array or a string's tokens count as leaked when they cover the "
              "private ids at least this much more often than the other numbers of the id range (chance: row "
              "indices, timestamps; R16B-2)"),
    Threshold("auc_margin_horizontal", 0.02, "AUC", "pooled baseline",
              "non-inferiority margin: fail when the holdout AUC is significantly (level auc_noninferiority_alpha, "
              "paired DeLong test on the same holdout rows) below the pooled-baseline AUC (plain LR on the pooled "
              "training rows, computed by the verifier per evaluation) minus this: pass iff AUC >= pooled - "
              "min(margin + z(1 - alpha) x SE(difference), auc_max_deficit). Margin fixed; baseline and SE per draw"),
    Threshold("auc_noninferiority_alpha", 0.01, "significance level", "project rule",
              "chance that a platform whose AUC really is within the margin of the pooled AUC fails an AUC test "
              "(F-AUC-HORIZONTAL, F-AUC-VERTICAL, F-NONIID, F-DROPOUT-RESUME, P-TIME-TO-AUC's 'reached'; one-sided, "
              "z = 2.33); replaced the bare point-estimate rule, which failed an honest platform about 1 draw in 10 "
              "on a 250-row holdout"),
    Threshold("auc_max_deficit", 0.05, "AUC", "project rule",
              "F-AUC-HORIZONTAL, F-AUC-VERTICAL and P-TIME-TO-AUC fail a holdout AUC more than this below the pooled "
              "AUC whatever the standard error "
              "(the paired error grows as a model moves away from the pooled one; an honest model's is about 0.01, "
              "so margin + z x SE stays below this for it)"),
    Threshold("auc_noninferiority_power", 0.95, "probability", "project rule",
              "reported, not a pass rule: a platform whose AUC is `detectable_gap` = min(margin + (z(1 - alpha) + "
              "z(power)) x SE, auc_max_deficit + z(power) x SE) below the pooled AUC fails with this probability"),
    Threshold("auc_margin_vertical", 0.02, "AUC", "pooled baseline",
              "non-inferiority margin of the vertical job's holdout AUC against the vertical pooled baseline (LR on "
              "the rows both parties hold), same paired rule and cap as auc_margin_horizontal"),
    Threshold("auc_margin_noniid", 0.05, "AUC", "pooled baseline",
              "non-inferiority margin of the non-IID job's holdout AUC (paired rule; cap auc_max_deficit_wide)"),
    Threshold("auc_margin_dropout", 0.05, "AUC", "pooled baseline",
              "non-inferiority margin of the AUC after a party leaves (paired rule; cap auc_max_deficit_wide)"),
    Threshold("auc_max_deficit_wide", 0.08, "AUC", "project rule",
              "the cap of the 0.05-margin tests (F-NONIID, F-DROPOUT-RESUME): their margin plus the 0.03 that "
              "auc_max_deficit leaves above the 0.02 margin (a cap equal to the margin would be the bare rule)"),
    Threshold("predict_tol", 1e-6, "probability", "task spec",
              "max |platform score - score of the exported model| over the rows sent"),
    Threshold("evaluate_auc_tol", 1e-6, "AUC", "task spec",
              "|platform AUC - AUC of its own /predict scores|"),
    Threshold("export_global_tol", 1e-6, "max |parameter difference|", "project rule",
              "the exported model equals the final global model the verifier's party received (coefficients, "
              "intercept; mean and relative scale when sent) to within this; else every test judging that export "
              "fails (R16-VERDICT-4; float64 end to end, so only rounding is allowed)"),
    Threshold("dropout_mark_repeat_max", 2.0, "x the party's share", "project rule",
              "F-DROPOUT-RESUME (R16B-6): the final model may carry the mark on the leaving party's last update at "
              "most this many times the party's largest honest share (max of its row share and 1 / parties): an "
              "honest mean carries it once (measured 0.17-0.21: weak, Sampan in-process and deployed, Flower; share "
              "0.25), a platform that files that update again in each later round 0.63-0.67 (weighted mean of "
              "weights, 4 later rounds) or more; in 3 of the 4 rounds 0.59, in 1 or 2 only 0.36 / 0.49 (passes)"),
    Threshold("final_auc_jump_max", 0.05, "AUC", "project rule",
              "on the verifier's party's rows, the final global model's AUC at most this above the best model of "
              "the rounds it took part in (global models received, its own sent models); else the export is not "
              "the federation's (R16B-1: a final model swapped in after the rounds; 0.05 = the F-AUC cap on the "
              "deficit it can detect: a smaller gain is within what the AUC tests cannot tell apart)"),
    # performance
    Threshold("time_to_auc_max_s", 300.0, "s", "task spec",
              "the quick job reaches pooled AUC minus the horizontal margin within this (the final model judged by "
              "F-AUC-HORIZONTAL's paired rule; the first round whose platform-reported AUC reaches it timed)"),
    Threshold("round_time_max_s", 30.0, "s", "task spec", "median round time of the quick job at most this"),
    Threshold("bytes_per_round_max", 4_194_304.0, "bytes", "task spec",
              "bytes of the verifier's party per round, both directions, at the wire (4 MiB)"),
    Threshold("party_peak_rss_max", 1_073_741_824.0, "bytes", "project rule",
              "peak resident memory of the processes the verifier runs (1 GiB)"),
    Threshold("scaling_exponent_max", 1.5, "log-log slope", "task spec",
              "round time grows at most like rows^1.5 (and parties^1.5, features^1.5)"),
    Threshold("privacy_cost_max_ratio", 20.0, "x plain time", "task spec",
              "secure aggregation / DP job time at most this many times the plain job"),
    Threshold("predict_p95_max_s", 2.0, "s", "task spec", "95th percentile latency of a 100-row /predict"),
    # security
    Threshold("max_body_bytes_refused", 16_777_216.0, "bytes", "task spec",
              "a request body of this size (16 MiB) must be refused (413) or rejected (4xx)"),
    Threshold("inversion_cosine_max", 0.5, "cosine", "task spec",
              "reconstruction of a planted record from the party's sent messages has cosine below this"),
    Threshold("inversion_plain_residual_max", 0.9, "relative residual", "project rule",
              "the party's sent vectors count as plain updates (and are inverted) unless their relative residual "
              "against the best-scaled full-batch gradient of its rows exceeds this (masked: about 1)"),
    Threshold("inversion_exact_step_max", 0.01, "relative residual", "project rule",
              "sent vectors this close to a scaled full-batch gradient of the party's own rows (over all rounds with "
              "one step, or in any one round with its own) ARE its plain update (a one-step update gives the "
              "gradient, which inverts): fail even when the probe's fit misses"),
    Threshold("mia_tpr_at_low_fpr_max", 0.05, "TPR at 0.1% FPR", "task spec",
              "membership attack on planted canaries reaches at most this TPR at 0.1% FPR (or at the lowest FPR "
              "the non-members resolve, stated; epsilon = 1 allows about e x FPR)"),
    Threshold("canary_share_min", 0.5, "fraction of the party's share", "project rule",
              "the next global models must carry at least this fraction of the verifier's party's share (its row "
              "share, or 1 / parties if smaller) of its canary-column changes (R16-VERDICT-2, R16B-4)"),
    Threshold("canary_share_z", 2.33, "standard errors", "project rule",
              "the canary share counts as missing only when its estimate plus this many standard errors stays below "
              "the floor (one-sided 1%: noise widens the allowance)"),
    Threshold("eps_lower_bound_slack", 0.0, "epsilon", "issue 16",
              "empirical epsilon lower bound (95% CI) at most the claimed epsilon plus this"),
    Threshold("dp_repeat_identical_tol", 1e-9, "max |coefficient difference| / max(1, max |coefficient|)",
              "project rule",
              "S-DP-REPEAT (R16B-7): two runs of one ordinary DP job (same data, same TaskSpec seed) whose exports "
              "differ by at most this are the same model: no noise the TaskSpec does not fix, so not DP (a "
              "deterministic function of the data is DP only if it ignores the data). Just above float64 rounding "
              "(a platform summing updates in arrival order differs by ~1e-16). Deliberately no noise floor: "
              "epsilon bounds how the output moves between neighbouring data sets, not its spread, and the noise a "
              "mechanism needs depends on its own sensitivity (clipping, sampling, rounds), so any floor would fail "
              "some honest mechanism"),
    Threshold("masked_alpha", 0.01, "significance level", "project rule",
              "the ring mask (sent - encode(clear)) fails a uniformity, zero or reuse test below this (Bonferroni "
              "over the tests) = not masked"),
    Threshold("byzantine_auc_drop_max", 0.10, "AUC", "task spec",
              "AUC under a Byzantine party (1 of 5) at least clean AUC minus this"),
    Threshold("backdoor_success_max", 0.20, "attack success rate", "task spec",
              "fraction of triggered holdout rows flipped to the attacker's label at most this"),
    Threshold("backdoor_confidence_z", 1.645, "z", "project rule",
              "S-BACKDOOR fails when the exact (Clopper-Pearson) lower bound of the attack success rate, one-sided at "
              "the normal level of this z (1.645: 95%), is above backdoor_success_max: honest models disagree on "
              "some triggered rows from training noise; the rate that still passes is 30% at 50 rows, 27% at 100, "
              "25% at 150-200 (the outcome states it)"),
    Threshold("backdoor_clean_success_max", 0.50, "clean-job flip rate", "project rule",
              "S-BACKDOOR (REV16-1): the clean five-party job's model (no attacker) fails on its own when the exact "
              "one-sided 95% lower bound of the share of the counted triggered rows (those the verifier's own "
              "references all call bad) it calls good is above this: the federation carries a backdoor without the "
              "attack. Far looser than backdoor_success_max because an honest Krum model wanders: honest Sampan's "
              "clean job flipped up to 42% (lower bound 33%; deployed, one draw), most draws 0-15%"),
    Threshold("backdoor_rows_min", 10.0, "rows", "project rule",
              "S-BACKDOOR needs at least this many triggered holdout rows every verifier-fitted reference calls bad "
              "(fewer: error, not a verdict); the platform's jobs have no say in which rows count (R-LAST-1, "
              "REV16-1)"),
    Threshold("robust_mean_share_min", 0.5, "fraction of the row share", "project rule",
              "under the mean the robust jobs name (no robust_aggregation), the round-1 step's change from the clean "
              "job (and a late-attack twin's at its secret round), regressed on the attacker's change, carries at "
              "least this fraction of its row share (R16B-3)"),
)  # fmt: skip

THRESHOLDS: dict[str, Threshold] = {t.key: t for t in _ALL}


def threshold(key: str) -> Threshold:
    """The threshold named ``key``; a KeyError names it (a catalogue bug, never user input)."""
    return THRESHOLDS[key]


def value(key: str) -> float:
    return THRESHOLDS[key].value


def thresholds_table() -> list[dict[str, Any]]:
    """All thresholds as plain rows (manifest, reports)."""
    return [t.to_dict() for t in _ALL]
