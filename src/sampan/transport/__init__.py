"""Transports move Messages between the coordinator and parties (in-process now, gRPC later).

May import: sampan.wire. Nothing above a transport knows which one it has.
"""

from sampan.core.transport import Endpoint, PartyError, TrafficLog, Transport, raise_for_error

__all__ = ["Endpoint", "PartyError", "TrafficLog", "Transport", "raise_for_error"]
