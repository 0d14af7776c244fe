"""Coordinator and party agents, run lifecycle, checkpoints, run store and audit events.

May import: wire, transport, models, metrics, data, horizontal, report.
"""
