"""Catalogue of the checks job's messages (`run.workflow = "checks"`, `sampan.checks`): every field, its protection.

Keys are `<sender>:<kind>` as in `sampan.wire.catalogue`: `coordinator:<kind>` is what a party receives,
`party:<kind>` what the coordinator receives. Under [checks.dp] every value computed from rows is the output of a
Laplace mechanism the ledger charges (tags `DP1:checks.label`, `DP1:checks.histogram`, `DP1:checks.overlap`);
without DP the same fields are exact and visible to the coordinator. Schemas are declared metadata (public).
A vertical job adds the signed run keys and PSI in cardinality mode: sealed envelopes (random to the relaying
coordinator) and the two set sizes, which PSI reveals exactly to the coordinator in every mode.
"""

from __future__ import annotations

from sampan.wire.catalogue import Field, MessageSpec

__all__ = ["CHECKS_TAGS", "checks_catalogue", "checks_receipt_rows"]

CHECKS_TAGS = {"checks.label": "DP1:checks.label", "checks.histogram": "DP1:checks.histogram",
               "checks.overlap": "DP1:checks.overlap"}


def _released(name: str, kind: str, dp: bool, what: str) -> Field:
    if dp:
        return Field(name, "charged", (CHECKS_TAGS[kind],), what=what + " (Laplace, at the party)")
    return Field(name, "visible", role="coordinator", what=what + ", exact")


def checks_catalogue(dp: bool, vertical: bool = False) -> dict[str, MessageSpec]:
    """Every message of a checks job in this setup."""
    dp_request = (Field("meta.dp.epsilon", "public", what="the release's epsilon (job setting)"),)
    dp_reply = (Field("meta.dp.mechanism", "public", what="'laplace'"),
                Field("meta.dp.epsilon", "public", what="the epsilon applied")) if dp else ()
    specs = [
        MessageSpec("checks.schema", "coordinator", ()),
        MessageSpec("checks.schema", "party", (
            Field("meta.schema.*", "public", what="declared schema: id and label names, per column its kind, public "
                  "bounds, categories and missing markers"),)),
        MessageSpec("checks.label", "coordinator", dp_request if dp else ()),
        MessageSpec("checks.label", "party", (
            *(() if vertical else (_released("meta.n", "checks.label", dp, "labelled row count"),)),
            _released("meta.positives", "checks.label", dp, "positive labels"), *dp_reply)),
    ]
    if not vertical:  # a vertical checks job compares no histograms (and its label holder's rows are its PSI size)
        specs += [
            MessageSpec("checks.histogram", "coordinator", (
                Field("meta.columns", "public", what="[name, low, high] per column: the job's public bounds"),
                Field("meta.bins", "public", what="bins per column (the job's)"), *(dp_request if dp else ()))),
            MessageSpec("checks.histogram", "party", (
                _released("arrays.counts", "checks.histogram", dp, "counts per column and public bin, and missing "
                          "cells"), *dp_reply)),
        ]
    if vertical:
        envelope = Field("arrays.envelope", "random", what="sealed to the peer (AEAD)")
        keys = (Field("arrays.*", "random", what="per-run public key, certificate and signature"),
                Field("meta.*", "public", what="protocol role, feature count"))
        peer = (Field("meta.peer", "public", what="the peer party"), Field("meta.mode", "public", what="'cardinality'"),
                Field("meta.check_format", "public", what="id format check"))
        size = Field("meta.n", "visible", role="coordinator", what="the party's id set size, exact (PSI reveals it)")
        parts = Field("meta.parts", "visible", role="coordinator",
                      what="sealed parts of the step's points, above 2^18 ids (follows from the set sizes)")
        specs += [
            MessageSpec("vertical.hello", "coordinator", ()),
            MessageSpec("vertical.hello", "party", keys),
            MessageSpec("vertical.peers", "coordinator", (Field("arrays.*", "random", what="every party's signed "
                                                                "public key"), Field("meta.roles.*", "public"))),
            MessageSpec("vertical.ack", "party", (Field("meta.peers", "public"),)),
            *(MessageSpec(k, "coordinator", (*peer, envelope)) for k in
              ("psi.offer", "psi.accept", "psi.blind", "psi.respond", "psi.finish", "psi.part")),
            MessageSpec("psi.pull", "coordinator", (*peer, Field("meta.part", "public", what="which part"))),
            *(MessageSpec(k, "party", (envelope,)) for k in ("psi.finish", "psi.part", "psi.pull")),
            *(MessageSpec(k, "party", (envelope, parts)) for k in ("psi.blind", "psi.respond")),
            MessageSpec("psi.offer", "party", (envelope, size)),
            MessageSpec("psi.accept", "party", (envelope, size, parts)),
            MessageSpec("checks.overlap", "coordinator", (Field("meta.peer", "public"), *(dp_request if dp else ()))),
            MessageSpec("checks.overlap", "party", (
                _released("meta.count", "checks.overlap", dp, "ids in common with the partner (PSI cardinality)"),
                *dp_reply)),
        ]
    return {f"{s.sender}:{s.kind}": s for s in specs}


def checks_receipt_rows(dp: bool, vertical: bool = False) -> list[dict[str, str]]:
    """The catalogue as receipt rows (as `sampan.wire.catalogue.receipt_rows`)."""
    return [{"sender": spec.sender, "kind": spec.kind, "field": f.name, "protection": f.protection,
             "mechanisms": ", ".join(f.mechanisms), "role": f.role or "", "description": f.describe()}
            for spec in checks_catalogue(dp, vertical).values() for f in spec.fields]
