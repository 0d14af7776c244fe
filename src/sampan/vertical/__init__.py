"""Vertical FL: PSI alignment, secure LR, GBDT, WOE scorecards and joint scoring, as workflows and party handlers.

May import: sampan.config, sampan.privacy, sampan.report, sampan.models, sampan.metrics, sampan.data, sampan.crypto,
sampan.core, sampan.wire, sampan.errors, sampan.files, sampan.compute. No transport, runtime or store: parties are
reached via `ctx.transport`.
"""
