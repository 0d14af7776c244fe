"""Cryptographic primitives shared by PSI, SecAgg and secure LR: identities and signed run keys,
sealed channels + PRG, fixed-point ring, Shamir, dealer.

May import: sampan.wire, sampan.errors, sampan.files (and numpy, `cryptography`); never a protocol,
privacy, transport or store.
"""
