"""A vertical party's signed run keys: its side of `vertical.hello` and `vertical.peers`.

Why apart: this is the step every vertical protocol's secrecy rests on (no sealed channel exists before it),
so it is kept small and read on its own. Each party makes a fresh X25519 key per run and signs (run id,
`CHANNEL_PROTOCOL`, its role, its name, the key) with its organisation's certificate key; before deriving any
sealed channel it checks every peer's signature and certificate against the consortium CA and CRL. A
coordinator that substitutes, re-signs or replays a key is refused with an error naming the peer. The signed
roles are kept by the channels (`SealedChannels.require_role`), and a run needs exactly one proved label holder.

What each role learns: every party and the coordinator learn the parties' certificates (public within the
consortium), protocol roles and per-run public keys; nothing secret.
"""

from __future__ import annotations

import numpy as np

from sampan.crypto.channel import PartyKeys, SealedChannels
from sampan.crypto.identity import IdentityVerifier, PartyIdentity, SignedKeys, sign_keys, verify_keys
from sampan.wire import Message

__all__ = ["CHANNEL_PROTOCOL", "PROTOCOL_ROLES", "RunKeyExchange"]

CHANNEL_PROTOCOL = "vertical.channels"  # domain of the signed channel keys (sampan.crypto.identity)
PROTOCOL_ROLES = ("label_holder", "partner")


class RunKeyExchange:
    """One party's run keys: made once per run at `hello`, turned into sealed channels once at `channels`.

    The party passes its identity, verifier and role at each call (it owns them; a test or an agent may
    swap them), and keeps the channels this returns.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.keys: PartyKeys | None = None  # the private half, dropped once the channels are derived
        self._hello_runs: set[str] = set()  # one vertical.hello per run

    def hello(self, msg: Message, identity: PartyIdentity, role: str, n_features: int) -> Message:
        """A fresh key pair for this run; the public half goes out signed with this organisation's certificate.

        Once per run: a second hello would give new channels on which a coordinator could start over what the
        protocols remember per channel. A restarted party is a new object and answers again; its peers then
        refuse, so the run fails with this error and is started again under a new run id.
        """
        if msg.run_id in self._hello_runs:
            raise ValueError(f"party {self.name!r}: refusing a second vertical.hello in run {msg.run_id!r} (run keys "
                             "are made once per run; start a new run to reconnect)")
        self._hello_runs.add(msg.run_id)
        self.keys = PartyKeys.generate()
        signed = sign_keys(identity, msg.run_id, CHANNEL_PROTOCOL, role, {"x25519": self.keys.public_bytes})
        return msg.reply("vertical.hello", {"public_key": np.frombuffer(self.keys.public_bytes, dtype=np.uint8),
                                            **signed.to_arrays()},
                         {"role": role, "n_features": n_features})

    def channels(self, msg: Message, verifier: IdentityVerifier, role: str, *,
                 has_channels: bool) -> SealedChannels:
        """Derive sealed channels, but only from peer keys signed by the peer's certificate for this run.

        A key the coordinator substituted (or replayed from another run) fails here with an
        IdentityError naming the peer, before any channel or mask exists. One-shot per `hello`: the
        private key is dropped once the channels are derived, so a replayed `peers` cannot rebuild
        channels with the same PRG keys (and reset what the protocols remember about them).
        `has_channels`: whether the party already holds channels (a replay, not a missing hello).
        """
        if self.keys is None:
            if has_channels:
                raise ValueError(f"party {self.name!r}: refusing a second vertical.peers for this run key (channels "
                                 "are derived once per vertical.hello; a replay would rebuild the same PRG streams)")
            raise ValueError(f"party {self.name!r}: vertical.hello must come first")
        publics = {k[4:]: np.ascontiguousarray(v, dtype=np.uint8).tobytes()
                   for k, v in msg.arrays.items() if k.startswith("key:")}
        if publics.get(self.name) not in (None, self.keys.public_bytes):
            raise ValueError(f"party {self.name!r}: the coordinator relayed a key for this party that is not its own")
        claimed = dict(msg.meta.get("roles") or {})
        # a verifier that knows the job (a deployed agent's `PeerAllowList`) admits only the job's label holder
        # in that role; a simulation's verifier has no such rule
        admit_role = getattr(verifier, "admit_role", None)
        if admit_role is not None:
            admit_role(self.name, role)
        roles = {self.name: role}
        for peer, public in publics.items():
            if peer == self.name:
                continue
            peer_role = str(claimed.get(peer, ""))
            if peer_role not in PROTOCOL_ROLES:
                raise ValueError(f"party {self.name!r}: peer {peer!r} has no protocol role (got {peer_role!r})")
            signed = SignedKeys.from_arrays(msg.arrays, peer, prefix=f"{peer}/")
            if admit_role is not None:
                admit_role(peer, peer_role)
            verify_keys(verifier, peer, msg.run_id, CHANNEL_PROTOCOL, peer_role, {"x25519": public}, signed)
            roles[peer] = peer_role  # proved: the peer signed its key under this role
        holders = sorted(n for n, r in roles.items() if r == "label_holder")
        if len(holders) != 1:
            why = "this party holds the labels and " if role == "label_holder" and len(holders) > 1 else ""
            raise ValueError(f"party {self.name!r}: {why}{holders or 'no party'} signed run keys as label holder; "
                             "a vertical run needs exactly one")
        channels = SealedChannels(self.name, self.keys, publics, msg.run_id, roles=roles)
        self.keys = None  # one-shot: the private key is dropped once the channels exist
        return channels
