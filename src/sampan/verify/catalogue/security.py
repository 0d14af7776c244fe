"""Security tests (S-*): the list. Bodies live in `security_wire` (TLS, replay, access, malformed, oversized),
`security_leak` (what messages reveal), `security_robust` (Byzantine parties, backdoor) and `security_psi` (what
PSI reveals of ids); `dp_repeat` (an ordinary DP job is randomised)."""

from __future__ import annotations

from sampan.verify.catalogue import security_leak as leak
from sampan.verify.catalogue import security_psi as psi
from sampan.verify.catalogue import security_robust as robust
from sampan.verify.catalogue import security_wire as wire
from sampan.verify.catalogue.base import Test
from sampan.verify.catalogue.dp_repeat import DP_REPEAT

__all__ = ["SECURITY"]

ALL = frozenset({"quick", "standard", "full"})
STD = frozenset({"standard", "full"})
_TLS_RULE = "the platform refuses the party: no protocol message reaches it"

SECURITY: list[Test] = [
    Test("S-ACCESS", "Access control (token, other project)", "security", ALL, wire.access,
         inputs="no, wrong and empty tokens; a job naming another project's parties",
         pass_rule="401 unauthorized for bad tokens; the cross-project job refused (4xx)"),
    Test("S-TLS-NO-CLIENT-CERT", "Party without a client certificate", "security", ALL, wire.tls_probe("none"),
         requires=("horizontal",), needs_kit=True, claim="mtls", inputs="the verifier's party connects with no cert",
         pass_rule=_TLS_RULE, timeout_s=150),
    Test("S-TLS-WRONG-CA", "Party certificate from another CA", "security", STD, wire.tls_probe("wrong_ca"),
         requires=("horizontal",), needs_kit=True, claim="mtls", inputs="a client cert issued by a foreign CA",
         pass_rule=_TLS_RULE, timeout_s=150),
    Test("S-TLS-EXPIRED", "Expired party certificate", "security", STD, wire.tls_probe("expired"),
         requires=("horizontal",), needs_kit=True, claim="mtls", inputs="a consortium client cert that expired",
         pass_rule=_TLS_RULE, timeout_s=150),
    Test("S-TLS-REVOKED", "Revoked party certificate", "security", STD, wire.tls_probe("revoked"),
         requires=("horizontal",), needs_kit=True, claim="mtls",
         inputs="a consortium client cert on the CA's CRL", pass_rule=_TLS_RULE, timeout_s=150),
    Test("S-REPLAY", "Replayed update", "security", STD, wire.replay, requires=("horizontal",), needs_kit=True,
         inputs="the party's first update, captured at the wire and sent again in round 2",
         pass_rule="the replayed bytes are refused", timeout_s=180),
    Test("S-MALFORMED", "Malformed requests and updates", "security", STD, wire.malformed,
         inputs="bad JSON, wrong types, NaN, unknown fields, ragged rows; a NaN update from the verifier's party",
         pass_rule="4xx for each request; for the NaN update: " + wire.BAD_UPDATE_RULE, timeout_s=180),
    Test("S-OVERSIZED", "Oversized requests and updates", "security", STD, wire.oversized,
         inputs="a body 1 MiB over the API's limit; an update 1000x too long",
         pass_rule="413/4xx for the body; for the long update: " + wire.BAD_UPDATE_RULE, thresholds=(),
         timeout_s=180),
    Test("S-GRAD-INVERSION", "Gradient inversion of the party's updates", "security", STD, leak.grad_inversion,
         requires=("horizontal",), needs_kit=True, claim="secure_aggregation",
         inputs="the verifier's party holds 3 planted records; full-batch rounds",
         pass_rule="best reconstruction cosine below the limit",
         thresholds=("inversion_cosine_max", "inversion_plain_residual_max"),
         timeout_s=240),
    Test("S-MIA", "Membership inference on canary records (TPR at low FPR)", "security", STD, leak.mia,
         requires=("horizontal",), claim="dp",
         inputs="480 canary columns, each set in one row of the verifier's party, each row included with "
         "probability 1/2 (about 240 members and 240 non-members); score = (2y-1) x the change of its weight",
         pass_rule="TPR at 0.1% FPR (or, with too few non-members, at the lowest resolvable FPR = 1/non-members, "
         "stated) <= limit, and epsilon lower bound (95%) <= claimed epsilon",
         thresholds=("mia_tpr_at_low_fpr_max", "eps_lower_bound_slack"), timeout_s=300),
    Test("S-DP-AUDIT-ONE-RUN", "One-run DP audit with canaries", "security", STD, leak.dp_audit,
         requires=("horizontal", "dp"), claim="dp",
         inputs="the S-MIA canary job (480 canary columns, each included with probability 1/2; Steinke et al. "
         "2023); 80 + 80 guesses, so the audit can show epsilon up to about 3.9",
         pass_rule="epsilon lower bound (95%) <= claimed epsilon", thresholds=("eps_lower_bound_slack",),
         timeout_s=300),
    *DP_REPEAT,  # S-DP-REPEAT (R16B-7): an ordinary DP job run twice must give two models
    Test("S-SECAGG-MASKED", "Secure aggregation masks the party's update", "security", ALL, leak.secagg_masked,
         requires=("horizontal",), needs_kit=True, claim="secure_aggregation",
         inputs="the quick job's updates as the party sent them (ring elements) vs its clear update, all rounds",
         pass_rule="mask = sent - encode(clear) mod 2^bits passes every bit-uniformity test, has no zero coordinate "
         "and is not reused (or shifted by a constant) across rounds; a float payload is never masked",
         thresholds=("masked_alpha",),
         timeout_s=300),
    Test("S-PSI-LEAK", "PSI reveals no id outside the intersection", "security", STD, psi.psi_leak,
         requires=("vertical", "psi"), needs_kit=True, claim="psi",
         inputs="a vertical job whose feature holder is the verifier's party; both parties' ids (strings) overlap "
         "partly; every message the party sent and received",
         pass_rule="no id of the other side outside the intersection reaches the party, and none of its own leaves "
         "it, in the clear or as an unsalted hash (MD5/SHA-1/SHA-2/SHA-3/BLAKE2); the reported intersection size "
         "equals the verifier's", thresholds=("psi_missing_extra",), timeout_s=300),
    Test("S-BYZANTINE", "Byzantine party (sign flip, scaling, ALIE)", "security", STD, robust.byzantine,
         requires=("horizontal",), needs_kit=True,
         inputs="1 of 5 parties malicious (the verifier's, 20% of the rows), 5-round jobs sharing one TaskSpec seed; "
         "aggregator Krum, else median if Krum is refused (no secure aggregation), when the platform declares "
         "robust_aggregation, else its default; reference: the same job without the attack",
         pass_rule="worst AUC drop <= limit", thresholds=("byzantine_auc_drop_max",), timeout_s=600),
    Test("S-BACKDOOR", "Model-replacement backdoor", "security", STD, robust.backdoor, requires=("horizontal",),
         needs_kit=True, inputs="1 of 5 parties submits gamma*(X - G) + G for a backdoored X (trigger: one column at "
         "6 SD); the S-BYZANTINE aggregator and seed; every holdout row triggered; the rows counted are those the "
         "verifier's own references all call bad: a pooled LR it fits on the rows it planted at the four honest "
         "parties (under Krum also each party's own model); the same job without the attack is judged, not a "
         "reference (REV16-1)",
         pass_rule="attack success rate (counted triggered rows the attacked model calls good) <= limit, judged on "
         "its exact (Clopper-Pearson) one-sided 95% lower bound; the clean job's model judged the same way against "
         "backdoor_clean_success_max",
         thresholds=("backdoor_success_max", "backdoor_clean_success_max", "backdoor_confidence_z",
                     "backdoor_rows_min"), timeout_s=300),
]
