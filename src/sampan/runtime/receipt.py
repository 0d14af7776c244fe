"""The privacy receipt of a run: what each party sent, under which protection, and what it cost.

Built only from what the store recorded (traffic log, ledger summary, chosen noise, config), so it
can be regenerated at any time and audited against the hash-chained event log.
"""

from __future__ import annotations

from datetime import datetime, timezone
from html import escape
from pathlib import Path
from typing import Any

from sampan.files import atomic_write_json
from sampan.report import ReportSection
from sampan.runtime.store import Store

THREAT_MODEL = (
    "Semi-honest parties and coordinator; the coordinator does not collude with a data party. "
    "Raw records never leave their owner: only the wire messages listed here do. Without DP2 or DP3, "
    "model deltas reach the coordinator unprotected and can leak information about training rows. "
    "DP2 (DP-SGD) protects every update a party sends, against the coordinator and everyone downstream. "
    "DP3 'central' protects the aggregate and the released model but the coordinator sees clipped "
    "individual updates (it must be trusted); DP3 'distributed' adds each "
    "party's noise share before sending. DP1, when on, noises the preprocessing statistics; the "
    "describe message (row counts) and the evaluation histograms of holdout scores are not noised."
)
SECAGG_THREAT_MODEL = (
    " Secure aggregation (SecAgg+) is on: each update leaves its party masked with pairwise and self masks "
    "in Z_2^64, so the coordinator sees only the sum over the parties that sent a masked input (who they "
    "are is public, never fewer than min_contributors >= 3) and, under DP3, only the noised sum. Every "
    "party signs its per-attempt keys with its organisation's certificate and checks its neighbours' "
    "signatures against the consortium CA, so a substituted key aborts the round; parties sign the "
    "survivor set (consistency round) and reveal, per neighbour and attempt, only one kind of share, "
    "recorded before it leaves, so a coordinator that lies about dropouts or repeats requests is refused. "
    "t of a party's neighbours together with the coordinator could still unmask it."
)


def _secagg(config: dict[str, Any] | None) -> dict[str, Any] | None:
    section = (config or {}).get("secure_aggregation")
    return section if section and section.get("enabled", True) else None


def _protection(kind: str, privacy: dict[str, Any] | None, noise: dict[str, float],
                secagg: dict[str, Any] | None = None) -> str:
    if kind == "fit_result":
        parts = []
        if secagg:
            parts.append(f"SecAgg+: update, weight and loss masked in Z_2^64 (threshold {secagg.get('threshold', 0.6)} "
                         "of each neighbourhood); the coordinator sees only the sum")
        if privacy and privacy.get("dp2"):
            dp2 = privacy["dp2"]
            parts.append(f"DP2: DP-SGD, noise multiplier {noise.get('DP2', 0):.3g}, per-example clip "
                         f"{dp2.get('max_grad_norm')}, Poisson sampling")
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
                f"noise multiplier {privacy['dp1']['noise_multiplier']}")
    return {
        "describe": "none: row counts, training positive rate, feature names",
        "stats": "none: per-feature count, sum and sum of squares (for standardisation)",
        "evaluation": "none: per-bin counts of holdout scores by label, loss sums, local metrics",
        "error": "none: error type and message",
    }.get(kind, "none")


def build_receipt(store: Store, run_id: str) -> dict[str, Any]:
    run = store.get_run(run_id)
    info = run.info or {}
    privacy_cfg = (run.config or {}).get("privacy")
    secagg = _secagg(run.config)
    checkpoint = store.latest_checkpoint(run_id)
    noise = dict((checkpoint.meta.get("noise") if checkpoint else None) or {})
    ledger = info.get("privacy") or {}
    parties: dict[str, Any] = {}
    for row in info.get("traffic") or []:
        if row["direction"] != "sent":
            continue
        entry = parties.setdefault(row["party"], {"sent": []})
        entry["sent"].append({"kind": row["kind"], "messages": row["messages"], "bytes": row["bytes"],
                              "protection": _protection(row["kind"], privacy_cfg, noise, secagg)})
    for party, summary in (ledger.get("parties") or {}).items():
        parties.setdefault(party, {"sent": []}).update({
            "budget": summary["budget"], "epsilon_spent": summary["epsilon_spent"],
            "epsilon_by_level": summary["epsilon_by_level"], "compositions_by_level": summary["compositions_by_level"]})
    return {
        "run_id": run_id,
        "generated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
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
        f"<td>{float(a['tpr_at_fpr'].get('0.001', 0)):.4f}</td><td>{escape(str(a['epsilon_lower_bound_ci95'][0]))[:6]}</td></tr>"
        for a in audit["attacks"])
    target = audit.get("target", {})
    claimed = target.get("claimed_epsilon")
    return ("<p><b>Membership audit</b> (members: training rows, non-members: holdout rows; "
            f"claimed ε {'%.3f' % claimed if claimed is not None else 'none (no DP)'}):</p>"
            "<table><thead><tr><th>attack</th><th>AUC</th><th>TPR @ 1% FPR</th><th>TPR @ 0.1% FPR</th>"
            f"<th>ε lower bound (95% conservative)</th></tr></thead><tbody>{rows}</tbody></table>")


def receipt_section(receipt: dict[str, Any]) -> ReportSection:
    rows = []
    for party, entry in sorted(receipt["parties"].items()):
        spent = entry.get("epsilon_spent")
        levels = entry.get("epsilon_by_level") or {}
        budget = entry.get("budget") or {}
        eps = (f"{spent:.3f} of {budget.get('epsilon')} (DP2 {levels.get('DP2', 0):.3f}, DP3 {levels.get('DP3', 0):.3f})"
               if spent is not None else "no DP: not accounted")
        sent = "<br>".join(f"{escape(s['kind'])}: {s['messages']} msgs, {s['bytes']:,} B — {escape(s['protection'])}"
                           for s in entry["sent"])
        rows.append(f"<tr><td>{escape(party)}</td><td>{escape(eps)}</td><td>{sent}</td></tr>")
    stop = receipt.get("budget_stop")
    html = (
        f"<p><b>Unit of privacy:</b> {escape(str(receipt['unit_of_privacy']))} "
        f"({escape(str(receipt['neighbouring_relation']))}); <b>accountant:</b> {escape(str(receipt['accountant']))}; "
        f"<b>δ:</b> {escape(str(receipt['delta']))}; <b>noise multipliers:</b> "
        f"{escape(', '.join(f'{k} {v:.3g}' for k, v in receipt['noise_multipliers'].items()) or 'none')}.</p>"
        + (f"<p><b>Budget stop:</b> {escape(stop)}</p>" if stop else "")
        + "<table><thead><tr><th>party</th><th>ε spent (of budget)</th><th>what it sent, under which protection</th>"
        f"</tr></thead><tbody>{''.join(rows)}</tbody></table>"
        + _audit_html(receipt.get("membership_audit"))
        + f"<p><b>Threat model.</b> {escape(receipt['threat_model'])}</p>"
        f"<p><b>Randomness.</b> {escape(receipt['randomness'])}</p>"
    )
    return ReportSection("Privacy receipt", html)
