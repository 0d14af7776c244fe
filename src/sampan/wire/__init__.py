"""Wire format: the Message envelope, its versioned, pickle-free binary codec, and the catalogue of
message fields with their protections (`sampan.wire.catalogue`, which the privacy receipt prints).

May import: sampan.errors (and numpy and the standard library only). Everything that crosses a party
boundary is a Message.
"""

from sampan.wire.codec import PROTOCOL_VERSION, WireError, decode, encode
from sampan.wire.message import ERROR_KIND, Message

__all__ = ["ERROR_KIND", "Message", "PROTOCOL_VERSION", "WireError", "decode", "encode"]
