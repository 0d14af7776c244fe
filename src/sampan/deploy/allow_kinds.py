"""The request kinds each workflow answers at a party agent (the catalogue `sampan.deploy.allow_requests`
checks every request of a run against): a request outside its job's kinds is refused, so a coordinator cannot
reach a handler (e.g. the insecure benchmark baseline `plr.*`) the job never announced.
"""

from __future__ import annotations

__all__ = ["HGB_KINDS", "HORIZONTAL_KINDS", "MODEL_PREFIXES", "SCORING_KINDS", "SERVING_KINDS", "TREE_JOB_KINDS",
           "VERTICAL_KINDS", "VERTICAL_NOISE"]

# vertical requests that release a histogram to the bank, and the meta field carrying their noise
VERTICAL_NOISE = {"woe.sum": "dp_epsilon", "woe.finish": "dp_epsilon", "vgb.setup": "hist_noise"}

# the request kinds of the vertical workflow (keys, PSI, secure LR, WOE, GBDT, scoring, the bank's own baseline);
# anything else (e.g. the insecure benchmark baseline `plr.*`, which hands out exact residuals) is refused
VERTICAL_KINDS = frozenset(
    {
        "vertical.hello",
        "vertical.peers",
        "vertical.splits",
        "vertical.local_baseline",
        "vertical.use_woe",
        "psi.offer",
        "psi.accept",
        "psi.blind",
        "psi.respond",
        "psi.finish",
        "psi.part",
        "psi.pull",
        "psi.align",
        "psi.aligned",
        # the opt-in RR22 backend (spu in a subprocess, its link tunnelled sealed): only in a job that announced it
        "psi.rr22.offer",
        "psi.rr22.accept",
        "psi.rr22.start",
        "psi.rr22.pump",
        "psi.rr22.finish",
        "psi.rr22.close",
        "vlr.setup",
        "vlr.share",
        "vlr.e_chunk",  # the masked features E = X - U, streamed in sealed chunks (issue 15)
        "vlr.masked_features",
        "vlr.forward",
        "vlr.square",
        "vlr.poly",
        "vlr.trunc",
        "vlr.ztrunc",
        "vlr.wshare",
        "vlr.wupdate",
        "vlr.wopen",
        "vlr.checkpoint",
        "vlr.flush",
        "vlr.finish",
        "woe.setup",
        "woe.mask",
        "woe.sum",
        "woe.finish",
        "woe.apply",
        "vgb.setup",
        "vgb.start",
        "vgb.step",
        "vgb.serve",
        "vgb.score_start",
        "vgb.score_partial",
        "vgb.score_finish",
        "score.start",
        "score.partial",
        "score.finish",
        # the one vertical workflow: stage bookkeeping, released summaries, each party's own model parts
        "vertical.state",
        "vertical.stage_done",
        "vertical.summary",
        "vertical.save_model",
        "vertical.load_model",
        "score.save",
    }
)
# a scoring job (review R12-VER-9): keys, the stored parts and joint scoring only; no alignment, no training
SCORING_KINDS = frozenset(
    {
        "vertical.hello",
        "vertical.peers",
        "vertical.load_model",
        "score.start",
        "score.partial",
        "score.finish",
        "vgb.score_start",
        "vgb.score_partial",
        "vgb.score_finish",
        "score.save",
    }
)
# a serving job (`sampan serve`'s session): a scoring job's requests plus the bank's batch queue
SERVING_KINDS = SCORING_KINDS - {"score.save"} | {"serve.next", "serve.start", "serve.finish", "serve.abort"}
# the training requests of each optional vertical model (review R12-VER-2): refused unless the job announced it
MODEL_PREFIXES = {"scorecard": ("woe.",), "gbdt": ("vgb.setup", "vgb.start", "vgb.step", "vgb.serve")}

HORIZONTAL_KINDS = frozenset(
    {"describe", "stats", "impute_stats", "fit", "evaluate", "secagg_keys", "secagg_share", "secagg_consistency",
     "secagg_unmask"}
)
# horizontal GBDT (exact histograms, no DP): answered only in a job that announced model "gbdt"
HGB_KINDS = frozenset({"hgb.sketch", "hgb.setup", "hgb.hist", "hgb.split", "hgb.leaves"})
# what else a horizontal GBDT job answers: its row count, its one evaluation, and what the job announced
TREE_JOB_KINDS = frozenset({"describe", "evaluate", "bank_alone", "evaluate_groups"})
