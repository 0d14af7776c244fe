"""Deployment across organisations: certificates, coordinator and party agents (over the one runner), their configs.

May import: anything below it (sampan.runtime, the capability packages, sampan.config, sampan.transport for gRPC, ...).
"""
