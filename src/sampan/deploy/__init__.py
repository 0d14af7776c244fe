"""Deployment across organisations: certificates, coordinator and party agents, their configs.

May import: sampan.transport (gRPC), sampan.runtime, sampan.vertical, sampan.horizontal, sampan.data, sampan.wire.
"""
