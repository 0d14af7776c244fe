"""A SecAgg+ party's state and secrets: what every step of the client checks before it answers.

Why apart: the steps (`client`, `unmasking`) share one record per label and one set of derived keys;
this base class owns them, and the lock that serialises every state-changing step.

What each role learns: see the package docstring (`sampan.privacy.secagg`); in short, the coordinator learns
one sum per round over one connected survivor set of at least m_min contributors (noised under DP3) and
who answered each step; a party learns its neighbours' signed public keys and fewer than t Shamir shares of
each neighbour's secrets.
"""

from __future__ import annotations

import functools
import hashlib
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from sampan.crypto.channel import ChannelError, PartyKeys, SealedChannels
from sampan.crypto.identity import IdentityVerifier, PartyIdentity, SignedKeys, verify_keys
from sampan.privacy.secagg.codec import _ROLE, _Bundle, _keys_protocol, _raw, _RoundSecrets
from sampan.privacy.secagg.params import MIN_CONTRIBUTORS, SecAggRefused
from sampan.privacy.secagg.state import LabelRecord, MemoryStateStore, SecAggStateStore, close_run, closed_key


def _serialised(method: Callable[..., Any]) -> Callable[..., Any]:
    """One state-changing step at a time per party: a check and the record it then writes cannot interleave
    with another request's (two concurrent masked inputs under one label would both pass the check)."""
    @functools.wraps(method)
    def locked(self: ClientBase, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            return method(self, *args, **kwargs)
    return locked


class ClientBase:
    """State and secrets of one party's SecAgg+ client (see `SecAggClient` for the steps)."""

    def __init__(self, name: str, master: bytes | None = None, *, identity: PartyIdentity,
                 verifier: IdentityVerifier, state: SecAggStateStore | None = None,
                 min_contributors: int = MIN_CONTRIBUTORS) -> None:
        if identity is None or verifier is None:
            raise ValueError(f"party {name!r}: secure aggregation needs this party's identity and the consortium "
                             "verifier (a simulation: `simulated_consortium`)")
        if identity.name != name:
            raise ValueError(f"party {name!r}: its identity certificate names {identity.name!r}")
        if min_contributors < MIN_CONTRIBUTORS:
            raise ValueError(f"party {name!r}: min_contributors must be at least {MIN_CONTRIBUTORS}")
        self.name = name
        self.identity, self.verifier = identity, verifier
        self.state: SecAggStateStore = state if state is not None else MemoryStateStore()
        self.min_contributors = min_contributors
        self._master = master if master is not None else os.urandom(32)
        self._answered: OrderedDict[str, np.ndarray] = OrderedDict()  # label -> masked input (idempotent replies)
        self._channels: OrderedDict[str, SealedChannels] = OrderedDict()  # label -> share channels (a cache)
        self._verified: OrderedDict[str, set[tuple[str, bytes]]] = OrderedDict()  # label -> (peer, bundle digest)
        self._lock = threading.RLock()

    # --- state and secrets -------------------------------------------------------------------------
    def _refuse(self, label: str, why: str) -> SecAggRefused:
        return SecAggRefused(f"party {self.name!r} refuses secure aggregation request under label {label!r}: {why}")

    def _secrets(self, label: str, nonce: str) -> _RoundSecrets:
        material = HKDF(algorithm=hashes.SHA256(), length=96, salt=None,
                        info=f"sampan/secagg/v2/{self.name}/{label}/{nonce}".encode()).derive(self._master)
        return _RoundSecrets(X25519PrivateKey.from_private_bytes(material[:32]), material[32:64], material[64:96])

    def _record(self, run_id: str, label: str, own: Mapping[str, np.ndarray]) -> tuple[LabelRecord, _RoundSecrets]:
        """This label's record and secrets; refuses a label it never advertised or whose keys it lost."""
        if not label.startswith(f"{run_id}/"):
            raise self._refuse(label, f"the label does not belong to run {run_id!r}")
        self._check_open(run_id, label)
        record = self.state.load(label)
        if record is None:
            raise self._refuse(label, "this party never advertised keys under it")
        s = self._secrets(label, record.nonce)
        if s.digest() != record.keys:
            raise ChannelError(f"party {self.name!r}: the keys of attempt {label!r} were made before a restart; "
                               "sitting this attempt out")
        if own and (_raw(own["c_pk"]) != s.c_public or _raw(own["s_pk"]) != s.s_public):
            raise self._refuse(label, "the coordinator echoed keys this party did not advertise")
        return record, s

    def _check_open(self, run_id: str, label: str) -> None:
        closed = self.state.load_round(closed_key(run_id))
        if closed is not None and closed.closed:
            raise self._refuse(label, f"run {run_id!r} is closed (its state was deleted; nothing more is answered "
                               "under it)")

    def close_run(self, run_id: str) -> int:
        """The run is over: delete its records (labels, rounds, cached vectors) and keep only a marker that
        refuses any later request of the run (a coordinator that 'closes' a run cannot reset the locks)."""
        with self._lock:
            gone = close_run(self.state, run_id)
            for cache in (self._answered, self._channels, self._verified):
                for key in [k for k in cache if k.startswith(f"{run_id}/")]:
                    del cache[key]
            return gone

    def _verify(self, run_id: str, label: str, bundles: Mapping[str, _Bundle]) -> None:
        """Every peer's keys must carry its valid signature for this run and label (IdentityError names it)."""
        seen = self._verified.setdefault(label, set())
        self._verified.move_to_end(label)
        while len(self._verified) > 8:
            self._verified.popitem(last=False)
        for peer in sorted(bundles):
            bundle = bundles[peer]
            if peer == self.name:
                raise self._refuse(label, "its own name is listed among its peers")
            if (peer, bundle.digest()) in seen:
                continue
            verify_keys(self.verifier, peer, run_id, _keys_protocol(label), _ROLE, bundle.keys(),
                        SignedKeys(bundle.certificate, bundle.signature))
            seen.add((peer, bundle.digest()))

    def _share_channels(self, label: str, s: _RoundSecrets, c_public: Mapping[str, bytes]) -> SealedChannels:
        key = hashlib.sha256(repr(sorted(c_public.items())).encode()).hexdigest()
        cached = self._channels.get(f"{label}|{key}")
        if cached is not None:
            return cached
        channels = SealedChannels(self.name, PartyKeys(s.c_key), dict(c_public), run_id=f"{label}|share")
        self._channels[f"{label}|{key}"] = channels
        while len(self._channels) > 8:
            self._channels.popitem(last=False)
        return channels
