"""Vertical FL (PSI, secret sharing, vertical models): a later issue.

May import: privacy, models, wire.
"""
