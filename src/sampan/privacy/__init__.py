"""Differential privacy mechanisms, ledger and secure aggregation (later issues).

May import: numpy/scipy and the standard library. Knows nothing about transports.
"""
