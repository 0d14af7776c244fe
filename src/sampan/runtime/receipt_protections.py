"""The horizontal receipt's terms: its threat model and evaluation texts, and the protection of each message kind.

Kept apart from the receipt's assembly (`sampan.runtime.receipt`) because this is the one place that states,
in words a reader can check, what protects what a party sends (DP level, noise multiplier, SecAgg+, in clear)
under a run's config and chosen noise; it changes whenever a protocol or a mechanism does, the assembly does not.
"""

from __future__ import annotations

from typing import Any

THREAT_MODEL = (
    "Semi-honest parties and coordinator; the coordinator does not collude with a data party. "
    "Raw records never leave their owner: only the wire messages listed here do. Without DP2 or DP3, "
    "model deltas reach the coordinator unprotected and can leak information about training rows. "
    "DP2 (DP-SGD) protects every update a party sends, against the coordinator and everyone downstream. "
    "DP3 'central' protects the aggregate and the released model but the coordinator sees clipped "
    "individual updates (it must be trusted); DP3 'distributed' (only with secure aggregation) adds each "
    "party's noise share before sending. Under [privacy] a party sends only outputs of charged mechanisms "
    "and public values: its training row count once through a Gaussian mechanism (DP1), the "
    "standardisation statistics through DP1, updates through DP2/DP3; no training loss, positive rate "
    "or clipping statistics. The unit of privacy is one training row of one party; holdout rows are "
    "outside it: under [privacy] the released model is evaluated once, at the end, on the holdout rows "
    "(score histograms by label, loss sums; summed under secure aggregation when it is on), and that "
    "evaluation is not noised. The catalogue below names every field of every message and its protection."
)
EVALUATION_DP = ("Under [privacy]: no per-round evaluation and no training loss are released; the released model "
                 "is evaluated once, at the end, on holdout rows, which are outside the DP unit (not noised). "
                 "Each party enforces this itself: it answers one evaluation (one model) per run and no training "
                 "request after it, in at most max_evaluations runs over its life, with or without DP (party.toml "
                 "[privacy], counted in its state dir), in exactly 100 score bins with sums at bin midpoints and no "
                 "local metrics. The coordinator chooses the evaluated model, so that evaluation can give each "
                 "holdout row's label and any coordinator-chosen function of the row, to 100 levels, per "
                 "evaluation; its exact counts give the holdout's size and label composition. A deployed party "
                 "draws its holdout itself, each row by a keyed hash "
                 "under its own secret, with the fraction pinned per dataset (another fraction is refused): "
                 "runs cannot rotate rows through the holdout, and its size is a Binomial draw that does not "
                 "reveal the training row count.")
EVALUATION_PLAIN = "Evaluated every eval_every rounds on holdout rows; training loss reported per round."
EVALUATION_SECAGG = " Evaluation replies are summed under secure aggregation: no per-party metrics exist."
SECAGG_THREAT_MODEL = (
    " Secure aggregation (SecAgg+) is on: each update leaves its party masked with pairwise and self masks "
    "in Z_2^64, so the coordinator sees only the sum over the parties that sent a masked input (who they "
    "are is public, never fewer than min_contributors >= 3) and, under DP3, only the noised sum. Every "
    "party signs its per-attempt keys with its organisation's certificate and checks its neighbours' "
    "signatures against the consortium CA, so a substituted key aborts the round; parties sign the "
    "survivor set (consistency round) and reveal, per neighbour and attempt, only one kind of share, "
    "recorded before it leaves, so a coordinator that lies about dropouts or repeats requests is refused. "
    "Parties accept only a connected neighbour graph, unmask only a survivor set connected in it, lock each "
    "round to one survivor set and graph, and lock each identical input (in any round, model or run) to the "
    "first survivor set it was unmasked for, and enforce (and sign) the job's minimum number of contributors. "
    "t of a party's neighbours together with the coordinator could still unmask it. Not covered: without DP3, "
    "SecAgg does not protect an update from a coordinator that differences rounds with perturbed models (a "
    "model changed by one ulp gives new inputs with almost the same updates; the sums over U and over U "
    "minus one party then reveal that party's update); with distributed DP3 every such release is noised "
    "and charged to the ledger."
)


def secagg_section(config: dict[str, Any] | None) -> dict[str, Any] | None:
    """The run config's [secure_aggregation] section when it is on, else None."""
    section = (config or {}).get("secure_aggregation")
    return section if section and section.get("enabled", True) else None


def _shown(value: Any) -> str:
    """A noise multiplier as the receipt prints it (a chosen float to 4 digits; 'auto' as is)."""
    return f"{value:.4g}" if isinstance(value, float | int) and not isinstance(value, bool) else str(value)


def message_protection(kind: str, privacy: dict[str, Any] | None, noise: dict[str, float],
                       secagg: dict[str, Any] | None = None, party: str | None = None) -> str:
    """What protects message `kind` as `party` sends it, under the run's [privacy] and [secure_aggregation]
    sections and its chosen noise multipliers: the words the receipt prints beside each party's traffic."""
    if kind == "fit_result":
        parts = []
        if secagg:
            parts.append(f"SecAgg+: update, weight and loss masked in Z_2^64 (threshold {secagg.get('threshold', 0.6)} "
                         "of each neighbourhood); the coordinator sees only the sum"
                         + ("" if privacy and privacy.get("dp3") else " (without DP3, not protected from a "
                            "coordinator that differences rounds with perturbed models)"))
        if privacy and privacy.get("dp2"):
            dp2 = privacy["dp2"]
            z2 = noise.get(f"DP2:{party}", noise.get("DP2", 0)) if party else noise.get("DP2", 0)
            parts.append(f"DP2: DP-SGD, noise multiplier {z2:.3g} (this party's own), per-example clip "
                         f"{dp2.get('max_grad_norm')}, Poisson sampling at the rate of its released row count")
        if privacy and privacy.get("dp3"):
            dp3 = privacy["dp3"]
            where = "noise added by the coordinator" if dp3.get("mode", "central") == "central" else \
                "each party adds its noise share"
            clip = "adaptive clip" if dp3.get("adaptive") else f"clip {dp3.get('clip')}"
            parts.append(f"DP3: update {clip}, noise multiplier {noise.get('DP3', 0):.3g} on the sum, {where}")
        return "; ".join(parts) or "none: model delta in clear to the coordinator"
    if kind.startswith("secagg_"):
        return {"secagg_keys": "public: two X25519 public keys and a hash commitment to the self-mask seed",
                "secagg_shares": "Shamir shares of its mask key and seed, sealed (X25519 + ChaCha20-Poly1305) for "
                                 "each neighbour; the coordinator relays ciphertext it cannot open",
                "secagg_consistency": "public: its signature over the survivor set of the attempt",
                "secagg_unmask": "per neighbour one share: of its self-mask seed if it sent its input, of its mask key "
                                 "if it dropped before; never both"}.get(kind, "secure aggregation step")
    if kind == "stats" and privacy and privacy.get("dp1"):
        return (f"DP1: count, sums and sums of squares clipped to public ranges, one Gaussian mechanism with "
                f"noise multiplier {_shown(noise.get('DP1:stats', privacy['dp1']['noise_multiplier']))}")
    if kind == "impute_stats" and privacy:
        return ("DP1: per imputed column, count and clipped sum of present training cells (mean) or a histogram "
                "over public bins (median), one Gaussian mechanism per run (noise multiplier "
                f"{_shown(noise.get('DP1:impute', privacy.get('impute_noise_multiplier', 'auto')))}), charged; "
                "released per party, not under SecAgg")
    if kind == "group_evaluation":  # fairness by group (issue 13 item 8): a release of its own
        if privacy:
            return ("DP1: per declared group level and score bin (100), label counts of holdout rows through one "
                    f"Gaussian mechanism (noise multiplier {privacy.get('group_noise_multiplier', 4.0)}, "
                    "sensitivity sqrt(group columns)), charged to the run and party ledgers; once per run, on the "
                    "evaluated model; per party, not under SecAgg")
        return ("none (revealed): per declared group level and score bin (100), exact label counts of holdout rows, "
                "per party in clear; levels a party holds fewer than 10 holdout rows of are zeroed and named, with "
                "more per column until the rows derivable from the evaluation are 0 or >= 10; once per run; "
                "two group columns chosen to nearly coincide can still isolate a few records (use DP)")
    if kind == "bank_alone_result":  # each bank alone vs the consortium (issue 13 item 6): per bank by nature
        if privacy:
            return ("DP2: the bank's local-only model trained by DP-SGD (its own noise multiplier, charged to the run "
                    "and party ledgers); label counts of its holdout rows in 100 score bins under that model and "
                    "under the released model (sums at bin midpoints), and its holdout row count; once per run, on the "
                    "model and exact scaler it evaluated; per bank in clear (secure "
                    "aggregation cannot apply)")
        return ("none (revealed): label counts of the bank's holdout rows in at most 100 score bins (score sums at "
                "bin midpoints, a function of the counts) under its local-only model and under the consortium model, "
                "and its holdout row count; per bank in clear, also under secure aggregation (the figures are per "
                "bank by nature); once per run, only in a run whose evaluation it answered (counted against its "
                "max_evaluations)")
    if kind == "describe" and privacy:
        return (f"DP1: training row count through a Gaussian mechanism (noise multiplier "
                f"{privacy.get('count_noise_multiplier', 20.0)}, sensitivity 1); holdout row count and feature "
                "names in clear; no positive rate")
    if kind == "evaluation" and (privacy or secagg):
        where = "summed under SecAgg+ (the coordinator sees only the sum)" if secagg else "per party in clear"
        when = ("once, at the end, on the released model (each party answers one model per run, in at most "
                "max_evaluations runs, DP or not); holdout rows are outside the DP unit, not noised: exact label "
                "counts in 100 bins (each holdout row's label and any coordinator-chosen function of the row, "
                "to 100 levels, "
                "per evaluation), sums at bin "
                "midpoints" if privacy else "every evaluation round")
        return f"score histograms of holdout rows by label, loss and Brier sums, {where}; {when}"
    return {
        "describe": "none: row counts, training positive rate, feature names",
        "stats": "none: per-feature count, sum and sum of squares (for standardisation)",
        "impute_stats": "none: per imputed column, count and sum of present training cells (mean) or a histogram "
                        "over public bins (median), and min/max of a median column without bounds; per party in "
                        "clear (not under secure aggregation), once per run, over the bounds and bins the party's "
                        "own schema declares (a median without bounds: a window holding all its values)",
        "evaluation": "none: per-bin counts of holdout scores by label (up to 2000 bins: to a coordinator that "
                      "picks the model, each holdout row's label and a feature to the bin), score and loss sums, "
                      "local metrics",
        "error": "none: error type and message",
    }.get(kind, "none")

