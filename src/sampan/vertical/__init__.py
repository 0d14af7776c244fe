"""Vertical FL: PSI alignment, sealed party channels, secret sharing with a dealer, secure LR, GBDT, WOE, scoring.

May import: privacy, models, wire.
"""
