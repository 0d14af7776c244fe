"""Checks before training (issue 14 item 4): a small cross-party job that compares the parties without moving rows.

Schema agreement (public metadata), label balance, per-feature drift between parties (PSI of noised histograms)
and, for vertical jobs, id overlap by PSI in cardinality mode; warnings a validator can read.
It sits above the capabilities because it reuses their protocols (the vertical run keys and PSI, the horizontal
table loading), and below the runtime, which reaches it by name (`sampan.runtime.capabilities`).

May import: sampan.horizontal, sampan.vertical, sampan.config, sampan.privacy, sampan.report, sampan.data,
sampan.crypto, sampan.core, sampan.wire, sampan.errors, sampan.files.
"""
