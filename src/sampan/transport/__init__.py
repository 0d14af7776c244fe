"""Transports move Messages between the coordinator and parties: in-process, multiprocess, gRPC with mutual TLS.

May import: sampan.core, sampan.wire, sampan.errors, sampan.files. Nothing above a transport knows which one it has.
"""

from sampan.core.transport import Endpoint, PartyError, TrafficLog, Transport, raise_for_error

__all__ = ["Endpoint", "PartyError", "TrafficLog", "Transport", "raise_for_error"]
