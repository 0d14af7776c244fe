"""The privacy receipt of a run: what each party sent, under which protection, and what it cost.

Built only from what the store recorded (traffic log, ledger summary, chosen noise, config), so it
can be regenerated at any time and audited against the hash-chained event log.

`build_receipt` serves every workflow. Horizontal runs get the detailed receipt below (DP levels,
SecAgg+, evaluation rules, every catalogued field). Any other workflow states its own terms in its
result's info under ``"receipt"`` (stored with the run by the runner): ``threat_model`` (text),
``reveals`` ({protocol step: what each role learns}), ``protections`` ({message kind: protection of
what a party sends in it}), optionally ``messages`` (catalogue rows), ``randomness``, ``unit_of_privacy``;
its ledger summary goes under ``"privacy"`` as for horizontal runs. Per-party traffic always comes
from the stored traffic events (or the final traffic summary).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from html import escape
from pathlib import Path
from typing import Any

from sampan.files import atomic_write_json
from sampan.report import ReportSection
from sampan.runtime.store import Store
from sampan.wire.catalogue import PROTECTIONS, Setup, receipt_rows

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


def _secagg(config: dict[str, Any] | None) -> dict[str, Any] | None:
    section = (config or {}).get("secure_aggregation")
    return section if section and section.get("enabled", True) else None


def _shown(value: Any) -> str:
    """A noise multiplier as the receipt prints it (a chosen float to 4 digits; 'auto' as is)."""
    return f"{value:.4g}" if isinstance(value, float | int) and not isinstance(value, bool) else str(value)


def _protection(kind: str, privacy: dict[str, Any] | None, noise: dict[str, float],
                secagg: dict[str, Any] | None = None, party: str | None = None) -> str:
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


def stored_traffic(store: Store, run_id: str) -> list[dict[str, Any]] | None:
    """Traffic per (party, direction, kind) summed over every `traffic` event the run logged.

    A resumed run has a fresh transport whose counters start at zero, so the transport's own summary
    covers only the last process; the events (saved with each round, and after the final evaluation)
    cover all of them. None when the run logged no per-party traffic (older runs, other workflows)."""
    totals: dict[tuple[str, str, str], list[int]] = {}
    found = False
    for event in store.events(run_id):
        if event.kind != "traffic" or "by_party" not in (event.detail or {}):
            continue
        found = True
        for row in event.detail["by_party"]:
            entry = totals.setdefault((row["party"], row["direction"], row["kind"]), [0, 0])
            entry[0] += int(row["messages"])
            entry[1] += int(row["bytes"])
    if not found:
        return None
    return [{"party": p, "direction": d, "kind": k, "messages": m, "bytes": b}
            for (p, d, k), (m, b) in sorted(totals.items())]


def build_receipt(store: Store, run_id: str) -> dict[str, Any]:
    """The run's receipt, whatever its workflow (see the module docstring for what a workflow supplies)."""
    run = store.get_run(run_id)
    if run.workflow != "horizontal" or "receipt" in (run.info or {}):  # horizontal GBDT states its own terms
        receipt = _workflow_receipt(store, run_id)
    else:
        receipt = _horizontal_receipt(store, run_id)
    receipt["after_training"] = after_training_releases(store, run_id)
    return receipt


def after_training_releases(store: Store, run_id: str) -> list[dict[str, Any]]:
    """Releases a party made from the model's data after the run (`sampan monitor drift`: counts of its
    TRAINING rows, the run's DP unit, and its current population), as logged on the run: a reader of the
    receipt must not take the run's epsilon for the whole privacy loss of those rows (review R13-DR-1)."""
    releases = []
    for event in store.events(run_id):
        if event.kind != "monitoring_drift":
            continue
        detail, charged = event.detail, event.detail.get("charged") or {}
        protection = (f"DP1 Gaussian release (noise multiplier {detail.get('noise_multiplier')}) charged to the "
                      f"party's ledger {charged.get('ledger')!r} (epsilon spent there: {charged.get('epsilon_spent')}"
                      f" of {charged.get('epsilon_budget')}); not in the run's ledger above"
                      if detail.get("noise_multiplier") is not None else
                      "revealed exactly (no DP): counts of the party's training and current rows per fixed bin")
        releases.append({"release": "monitoring drift (score and feature counts, PSI)", "party": detail.get("party"),
                         "at": event.at.isoformat(timespec="seconds"), "protection": protection})
    return releases


def _sent_by_party(store: Store, run_id: str, info: dict[str, Any],
                   protection: Callable[[str, str], str]) -> dict[str, dict[str, Any]]:
    """Per party: every message kind it sent (count, bytes) with its protection."""
    parties: dict[str, dict[str, Any]] = {}
    traffic = stored_traffic(store, run_id)
    for row in traffic if traffic is not None else (info.get("traffic") or []):
        if row["direction"] != "sent":
            continue
        entry = parties.setdefault(row["party"], {"sent": []})
        entry["sent"].append({"kind": row["kind"], "messages": row["messages"], "bytes": row["bytes"],
                              "protection": protection(row["kind"], row["party"])})
    return parties


_RECEIPT_TERMS = {"threat_model", "reveals", "protections", "messages", "randomness", "unit_of_privacy",
                  "noise_multipliers"}


def _workflow_receipt(store: Store, run_id: str) -> dict[str, Any]:
    """A non-horizontal run's receipt from its stored info (``info["receipt"]``, ``info["privacy"]``)."""
    run = store.get_run(run_id)
    info = run.info or {}
    terms = info.get("receipt") or {}
    protections = terms.get("protections") or {}
    ledger = info.get("privacy") or {}
    parties = _sent_by_party(store, run_id, info, lambda kind, party: str(protections.get(
        kind, "see the workflow's threat model: no raw records, only the catalogued message fields")))
    for party, summary in (ledger.get("parties") or {}).items():
        parties.setdefault(party, {"sent": []}).update({
            k: summary.get(k) for k in ("budget", "epsilon_spent", "epsilon_by_level", "compositions_by_level")})
    return {
        "run_id": run_id,
        "workflow": run.workflow,
        "status": run.status,
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "differential_privacy": bool(ledger),
        "unit_of_privacy": terms.get("unit_of_privacy",
                                     ledger.get("unit_of_privacy", "record-level within each party")),
        "neighbouring_relation": ledger.get("neighbouring_relation", "add_or_remove_one"),
        "accountant": ledger.get("accountant"),
        "delta": ((run.config or {}).get("privacy") or {}).get("delta"),
        "noise_multipliers": dict(terms.get("noise_multipliers") or {}),
        "budget_stop": info.get("budget_stop"),
        "threat_model": str(terms.get("threat_model") or (
            "Semi-honest parties and coordinator; the coordinator does not collude with a data party. Raw "
            "records never leave their owner: only the wire messages listed here do.")),
        "reveals": dict(terms.get("reveals") or {}),
        "randomness": str(terms.get("randomness") or (
            "splits and orders from the run seed; keys, masks and DP noise from the operating system's CSPRNG")),
        "parties": parties,
        "messages": list(terms.get("messages") or []),
        "protections": PROTECTIONS,
        "note": ledger.get("note"),
        **{k: v for k, v in terms.items() if k not in _RECEIPT_TERMS},
    }


def _horizontal_receipt(store: Store, run_id: str) -> dict[str, Any]:
    run = store.get_run(run_id)
    info = run.info or {}
    privacy_cfg = (run.config or {}).get("privacy")
    secagg = _secagg(run.config)
    checkpoint = store.latest_checkpoint(run_id)
    noise = dict((checkpoint.meta.get("noise") if checkpoint else None) or {})
    ledger = info.get("privacy") or {}
    parties = _sent_by_party(store, run_id, info,
                             lambda kind, party: _protection(kind, privacy_cfg, noise, secagg, party))
    for party, summary in (ledger.get("parties") or {}).items():
        entry = parties.setdefault(party, {"sent": []})
        entry.update({
            "budget": summary["budget"], "epsilon_spent": summary["epsilon_spent"],
            "epsilon_by_level": summary["epsilon_by_level"], "compositions_by_level": summary["compositions_by_level"]})
        if privacy_cfg and privacy_cfg.get("dp2"):
            entry["dp2_noise_multiplier"] = noise.get(f"DP2:{party}", noise.get("DP2"))
    setup = Setup.from_config(run.config or {})
    evaluation = (EVALUATION_DP if privacy_cfg else EVALUATION_PLAIN) + (EVALUATION_SECAGG if secagg else "")
    return {
        "run_id": run_id,
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "differential_privacy": bool(privacy_cfg),
        "unit_of_privacy": ledger.get("unit_of_privacy", "record-level within each party"),
        "neighbouring_relation": ledger.get("neighbouring_relation", "add_or_remove_one"),
        "accountant": ledger.get("accountant"),
        "delta": (privacy_cfg or {}).get("delta"),
        "sampling": ("DP2: Poisson sampling of each party's rows with rate q per step; DP3: all selected parties, "
                     "selection not secret, no amplification claimed") if privacy_cfg else None,
        "noise_multipliers": noise,
        "budget_stop": info.get("budget_stop"),
        "threat_model": THREAT_MODEL + (SECAGG_THREAT_MODEL if secagg else ""),
        "secure_aggregation": ({"protocol": "SecAgg+ (Bell et al. 2020): X25519 pairwise masks, Shamir t-of-n shares "
                                "of mask keys and self-mask seeds, dropout recovery",
                                "min_contributors": secagg.get("min_contributors", 3),
                                **{k: secagg.get(k) for k in ("threshold", "neighbours", "frac_bits", "max_abs")}}
                               if secagg else None),
        "randomness": "partitions, initialisation and minibatch order from the run seed; DP noise, DP-SGD sampling "
                      "and masks from the operating system's CSPRNG",
        "parties": parties,
        "evaluation": evaluation,
        "holdout_rows_in_dp_unit": False if privacy_cfg else None,
        "messages": receipt_rows(setup),
        "protections": PROTECTIONS,
        "note": ledger.get("note"),
        "membership_audit": info.get("membership_audit"),
    }


def write_receipt(receipt: dict[str, Any], path: Path) -> Path:
    """Atomic JSON write next to the report."""
    return atomic_write_json(path, receipt, indent=2)


def _audit_html(audit: dict[str, Any] | None) -> str:
    if not audit:
        return "<p><b>Membership audit:</b> not run (<code>sampan audit RUN_ID</code>).</p>"
    rows = "".join(
        f"<tr><td>{escape(a['name'])}</td><td>{a['auc']:.3f}</td><td>{float(a['tpr_at_fpr'].get('0.01', 0)):.4f}</td>"
        f"<td>{float(a['tpr_at_fpr'].get('0.001', 0)):.4f}</td>"
        f"<td>{escape(str(a['epsilon_lower_bound_ci95'][0]))[:6]}</td></tr>"
        for a in audit["attacks"])
    target = audit.get("target", {})
    claimed = target.get("claimed_epsilon")
    return ("<p><b>Membership audit</b> (members: training rows, non-members: holdout rows; "
            f"claimed ε {format(claimed, '.3f') if claimed is not None else 'none (no DP)'}):</p>"
            "<table><thead><tr><th>attack</th><th>AUC</th><th>TPR @ 1% FPR</th><th>TPR @ 0.1% FPR</th>"
            f"<th>ε lower bound (95% conservative)</th></tr></thead><tbody>{rows}</tbody></table>")


def _catalogue_html(rows: list[dict[str, str]]) -> str:
    """Every field of every message, with its protection (the catalogue of `sampan.wire.catalogue`)."""
    if not rows:
        return ""
    body = "".join(f"<tr><td>{escape(r['sender'])}</td><td>{escape(r['kind'])}</td>"
                   f"<td><code>{escape(r['field'])}</code>"
                   f"</td><td>{escape(r['description'])}</td></tr>" for r in rows)
    return ("<details><summary>Every message field and its protection</summary>"
            "<p>Sender: who sends it; the other side reads it.</p>"
            "<table><thead><tr><th>sender</th><th>message</th><th>field</th><th>protection</th></tr></thead>"
            f"<tbody>{body}</tbody></table></details>")


def receipt_section(receipt: dict[str, Any]) -> ReportSection:
    multipliers = receipt.get("noise_multipliers") or {}
    rows = []
    for party, entry in sorted(receipt["parties"].items()):
        spent = entry.get("epsilon_spent")
        levels = entry.get("epsilon_by_level") or {}
        budget = entry.get("budget") or {}
        by_level = ", ".join(f"{lvl} {levels.get(lvl, 0):.3f}" for lvl in ("DP1", "DP2", "DP3"))
        z2 = entry.get("dp2_noise_multiplier")
        eps = (f"{spent:.3f} of {budget.get('epsilon')} ({by_level})"
               + (f"; DP2 noise multiplier {z2:.3g}" if z2 is not None else "")
               if spent is not None else "no DP: not accounted")
        sent = "<br>".join(f"{escape(s['kind'])}: {s['messages']} msgs, {s['bytes']:,} B — {escape(s['protection'])}"
                           for s in entry["sent"])
        rows.append(f"<tr><td>{escape(party)}</td><td>{escape(eps)}</td><td>{sent}</td></tr>")
    stop = receipt.get("budget_stop")
    html = (
        f"<p><b>Unit of privacy:</b> {escape(str(receipt['unit_of_privacy']))} "
        f"({escape(str(receipt['neighbouring_relation']))}); <b>accountant:</b> {escape(str(receipt['accountant']))}; "
        f"<b>δ:</b> {escape(str(receipt['delta']))}; <b>noise multipliers:</b> "
        f"{escape(', '.join(f'{k} {v:.3g}' for k, v in multipliers.items()) or 'none')}.</p>"
        + (f"<p><b>Budget stop:</b> {escape(stop)}</p>" if stop else "")
        + "<details><summary>What each party sent, message by message, and its ε</summary>"  # folded: raw tables
        "<table><thead><tr><th>party</th><th>ε spent (of budget)</th><th>what it sent, under which protection</th>"
        f"</tr></thead><tbody>{''.join(rows)}</tbody></table></details>"
        + (f"<p><b>Evaluation.</b> {escape(str(receipt['evaluation']))}</p>" if receipt.get("evaluation") else "")
        + _catalogue_html(receipt.get("messages") or [])
        + _audit_html(receipt.get("membership_audit"))
        + "".join(f"<p><b>What is revealed ({escape(str(step))}).</b> {escape(str(text))}</p>"
                  for step, text in (receipt.get("reveals") or {}).items())
        + f"<p><b>Threat model.</b> {escape(receipt['threat_model'])}</p>"
        f"<p><b>Randomness.</b> {escape(receipt['randomness'])}</p>"
    )
    return ReportSection("Privacy receipt", html)
