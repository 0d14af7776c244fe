"""Re-export of `sampan.crypto.channel` (sealed envelopes and the pairwise PRG moved to the crypto layer)."""

from sampan.crypto.channel import ChannelError, PartyKeys, SealedChannels, new_seed, prg_bytes, prg_uint64

__all__ = ["ChannelError", "PartyKeys", "SealedChannels", "prg_bytes", "prg_uint64", "new_seed"]
