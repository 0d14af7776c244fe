"""Sampan: privacy-preserving federated learning for credit and fraud models.

Parties keep their records; only `sampan.wire` messages cross a party boundary.
"""

__version__ = "0.1.0"
