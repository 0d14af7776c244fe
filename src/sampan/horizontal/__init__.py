"""Horizontal FL: strategies, aggregators and party-side learners.

May import: models, privacy, wire, metrics. Knows nothing about transports.
"""
