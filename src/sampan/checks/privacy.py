"""The checks' DP mod: every reply computed from rows leaves through a Laplace mechanism, at the party.

Why a mod: the handlers stay exact (`sampan.checks.party`); the party alone decides the sensitivity of each
release (never taken from the request), and a party whose job announced DP refuses a request without it, so a
coordinator cannot announce a private job and then ask for exact counts.

Releases (adding or removing one record of the party; pure epsilon, delta 0):
- ``checks.label`` [rows, positives]: L1 sensitivity 2 (the row count and at most one positive); in a vertical job
  [positives] only, sensitivity 1 (the row count is the PSI set size, exact anyway).
- ``checks.histogram`` (m columns x bins+1): L1 sensitivity m (the record adds one count per column).
- ``checks.overlap`` the intersection count: L1 sensitivity 1. It is a statistic of the label holder's AND the
  partner's records, so both are charged (review R14-CHECKS-3): the label holder when it answers, the partner
  (its own ledger) when it answers ``psi.respond``, the PSI step that feeds its ids into the count.
``checks.schema`` is public metadata and passes unchanged. Each release is answered once per run, keyed on (run,
kind) and for the overlap also the partner it counts with (review R14-CHECKS-1: any other ``meta.peer`` is
ignored): a coordinator that asked again could average the noise away, or difference two exact answers.
The epsilon of each release is the job's (``job["checks"]["dp"]``, `sampan.checks.terms`), never the request's
alone (review R14-CHECKS-2), and its noise multiplier 1/epsilon (Laplace scale per unit of sensitivity) must meet
the party's floor (its policy's ``min_noise_multiplier``, from [allow]).
The coordinator charges each release to the run's ledger before it sends the request (`sampan.checks.workflow`);
noise comes from `LaplaceMechanism` (the OS CSPRNG).
What each role learns: the coordinator, the noised values only (epsilon-DP in one record of the party, per
release, composed by the ledger); the party, nothing (it only answers). NOT covered by DP: the PSI set sizes
(exact to the coordinator and the peer) and, in a vertical job, the exact overlap count the label holder itself
computes in PSI cardinality mode (the noised count is what leaves it).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from sampan.checks.protocol import HISTOGRAM, LABEL, OVERLAP
from sampan.checks.terms import check_release_epsilon
from sampan.core.party import Handler, Mod
from sampan.privacy.ledger import PrivacyEvent
from sampan.privacy.mechanisms import LaplaceMechanism
from sampan.privacy.party_policy import PolicyRefused
from sampan.wire import Message

__all__ = ["RELEASES", "checks_dp_mod", "requested_epsilon"]

RELEASES: tuple[str, ...] = (LABEL, HISTOGRAM, OVERLAP)


def requested_epsilon(party: str, msg: Message) -> float | None:
    """The epsilon a request carries in ``meta.dp.epsilon`` (None: an exact request)."""
    dp = msg.meta.get("dp")
    if dp is None:
        return None
    epsilon = dp.get("epsilon") if isinstance(dp, dict) else None
    if not isinstance(epsilon, (int, float)) or isinstance(epsilon, bool) or not math.isfinite(epsilon) or epsilon <= 0:
        raise PolicyRefused(f"party {party!r}: {msg.kind} meta.dp.epsilon must be a positive number, got {epsilon!r}")
    return float(epsilon)


def checks_dp_mod(party: str, *, announced_dp: bool, max_epsilon: float | None = None, policy: Any = None,
                  job: Mapping[str, Any] | None = None) -> Mod:
    """Noise every release that carries ``meta.dp``; refuse an exact one when the job announced DP or the party's
    policy requires DP; refuse an epsilon other than the job's (``job["checks"]["dp"]``), above ``max_epsilon``
    (the party's own cap per release, when it sets one) or below the policy's noise floor.
    ``policy``: the party's `PartyPrivacyPolicy` (a deployed agent's): each noised release is charged to the
    party's own persistent ledger first, and refused when its own budget would be exceeded."""
    job = job or {}
    exact_refused = announced_dp or bool(policy is not None and policy.requires_dp())
    terms = job.get("checks") if isinstance(job.get("checks"), Mapping) else {}
    dp_terms = terms.get("dp") if isinstance(terms, Mapping) else None
    partner = bool(job.get("vertical")) and job.get("label_holder") not in (None, party)

    answered: set[tuple[str, str, str]] = set()

    def mod(msg: Message, inner: Handler) -> Message:
        if msg.kind == "psi.respond" and partner and isinstance(dp_terms, Mapping):
            _charge_partner(msg)
        if msg.kind not in RELEASES:
            return inner(msg)
        key = (msg.run_id, msg.kind, str(msg.meta.get("peer", "")) if msg.kind == OVERLAP else "")
        if key in answered:
            raise PolicyRefused(f"party {party!r} refuses a second {msg.kind} in run {msg.run_id!r}: each checks "
                                "release is answered once per run")
        answered.add(key)
        epsilon = requested_epsilon(party, msg)
        if epsilon is None:
            if exact_refused:
                raise PolicyRefused(f"party {party!r} refuses an exact {msg.kind}: the checks job it accepted "
                                    "announced DP, or its own policy requires DP")
            return inner(msg)
        check_release_epsilon(party, msg.kind, epsilon, job)
        if max_epsilon is not None and epsilon > max_epsilon:
            raise PolicyRefused(f"party {party!r} refuses {msg.kind} at epsilon {epsilon} (its cap is {max_epsilon})")
        if policy is not None:  # Laplace noise multiplier (scale per unit of sensitivity) 1/epsilon vs the floor
            policy._noise(party, f"{msg.kind} Laplace noise multiplier (1/epsilon)", 1.0 / epsilon)
        if policy is not None:  # the party's own ledger, before anything is computed from its rows
            policy._charge(party, [PrivacyEvent(party=party, level="DP1", mechanism="laplace", epsilon=epsilon,
                                                step=msg.step, note=f"checks: {msg.kind}")])
        reply = inner(msg)
        if reply.kind == "error":
            return reply
        return _noised(reply, epsilon)

    def _charge_partner(msg: Message) -> None:
        """The partner's share of the overlap count: charged to its own ledger before its ids go into it."""
        assert isinstance(dp_terms, Mapping)
        epsilon = float(dp_terms.get("overlap_epsilon") or 0.0)
        if epsilon <= 0:
            raise PolicyRefused(f"party {party!r} refuses psi.respond: the DP checks job announced no overlap epsilon")
        if policy is not None:
            policy._noise(party, "checks.overlap Laplace noise multiplier (1/epsilon)", 1.0 / epsilon)
            policy._charge(party, [PrivacyEvent(party=party, level="DP1", mechanism="laplace", epsilon=epsilon,
                                                step=msg.step, note="checks: id overlap count (partner's share)")])
    return mod


def _noised(reply: Message, epsilon: float) -> Message:
    meta: dict[str, Any] = dict(reply.meta)
    arrays = dict(reply.arrays)
    if reply.kind == LABEL:
        if "n" in meta:
            values = np.asarray(LaplaceMechanism(2.0, epsilon).release(np.array([meta["n"], meta["positives"]])))
            meta.update(n=float(values[0]), positives=float(values[1]))
        else:  # vertical: positives only
            meta["positives"] = float(LaplaceMechanism(1.0, epsilon).release(float(meta["positives"])))
    elif reply.kind == HISTOGRAM:
        counts = np.asarray(arrays["counts"], float)
        arrays["counts"] = np.asarray(LaplaceMechanism(float(max(counts.shape[0], 1)), epsilon).release(counts))
    elif reply.kind == OVERLAP:
        meta["count"] = float(LaplaceMechanism(1.0, epsilon).release(float(meta["count"])))
    meta["dp"] = {"mechanism": "laplace", "epsilon": epsilon}
    return Message(reply.run_id, reply.step, reply.sender, reply.recipient, reply.kind, arrays, meta)
