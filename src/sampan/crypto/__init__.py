"""Cryptographic building blocks shared by the protocols: party identities and signed run keys, sealed channels, PRG.

May import only the standard library, numpy, `cryptography`, `sampan.wire`, privacy and models — never transports, runtime, deploy or the CLI.
"""
