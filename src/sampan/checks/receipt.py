"""The checks job's receipt terms (`sampan.runtime.receipt` reads them from the run's info): what each role learns,
what protects each message, every catalogued field (`sampan.wire.checks_catalogue`)."""

from __future__ import annotations

from typing import Any

from sampan.config.checks import ChecksSection
from sampan.vertical.psi import MODE_REVEALS
from sampan.wire.checks_catalogue import checks_receipt_rows

__all__ = ["receipt_terms"]


def receipt_terms(settings: ChecksSection, *, vertical: bool) -> dict[str, Any]:
    dp = settings.dp is not None
    released = ("Laplace-noised at the party and charged to the run's ledger before the request left"
                if dp else "exact, revealed to the coordinator (no DP)")
    reveals = {
        "schema": "every party's declared schema (column names, kinds, public bounds, categories, missing markers): "
                  "public metadata, revealed to the coordinator",
        "label balance": (f"the label holder's positives (its rows are its PSI set size): {released}" if vertical
                          else f"the label holders' [rows, positives]: {released}"),
        "who sees the report": "the run's report holds these per-party statistics: the control plane serves it to "
                               "the consortium's admins, analysts and auditors only, never to another party's "
                               "operator",
    }
    if vertical:
        reveals["id overlap"] = (MODE_REVEALS["cardinality"] + f" The label holder then reports the count: {released}"
                                 + ("; it is charged to the label holder and the partner (a statistic of both "
                                    "parties' records)." if dp else ".")
                                 + " Outside any DP guarantee: the coordinator and each peer learn the PSI set sizes "
                                 "exactly (PSI reveals them in every mode), and the label holder computes the exact "
                                 "overlap count itself.")
    else:
        reveals["drift"] = (f"each party's counts per public bin of every compared column: {released}; PSI values "
                            "are computed from them by the coordinator (post-processing)")
    protections = {"checks.schema": "public metadata", "checks.label": released}
    if not vertical:
        protections["checks.histogram"] = released
    if vertical:
        protections["checks.overlap"] = released
        protections.update({"vertical.hello": "signed per-run public key", "vertical.peers": "an acknowledgement",
                            "psi.offer": "sealed envelope; the set size in clear",
                            "psi.accept": "sealed envelope; the set size in clear",
                            "psi.blind": "sealed envelope", "psi.respond": "sealed envelope",
                            "psi.finish": "an acknowledgement (no count in cardinality mode)",
                            "psi.part": "sealed envelope (a part of a step's points, above 2^18 ids)",
                            "psi.pull": "sealed envelope (a part of a step's points, above 2^18 ids)"})
    return {
        "threat_model": ("Semi-honest parties; a coordinator that does not collude with a data party. No row leaves "
                         "its party: only the catalogued fields below."
                         + (" PSI runs over sealed channels from run keys signed by each organisation. 'Not which "
                            "ids' holds for a label holder that follows the protocol: one that blinds each id with "
                            "its own key learns which of its ids the partner holds (PSI cardinality mode is "
                            "semi-honest only)." if vertical else "")),
        "reveals": reveals,
        "protections": protections,
        "messages": checks_receipt_rows(dp, vertical),
        "unit_of_privacy": ("record-level within each party, for the releases charged above (not the PSI set sizes "
                            "nor the label holder's own exact overlap count)" if dp
                            else "none: no DP (every release listed above)"),
        "noise_multipliers": {},
    }
