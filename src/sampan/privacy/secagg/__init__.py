"""Secure aggregation that survives dropouts (SecAgg+: Bell et al. 2020, after Bonawitz et al. 2017).

The coordinator learns the sum of the surviving parties' vectors and nothing else about any one of
them. Every party u turns its float vector x_u into fixed-point ring elements of Z_2^64 and sends

    y_u = x_u + PRG(b_u) + sum_{v in N(u)} sign(u, v) * PRG(s_uv)      (mod 2^64)

where N(u) are its neighbours in a public k-regular graph (a Harary graph on a random ring order;
the complete graph when the consortium is small), s_uv is an X25519 agreement between u's and v's mask
keys (so u and v draw identical masks; sign(u, v) = +1 if u < v, else -1, so they cancel in a sum), and
b_u is a private self-mask seed. One attempt has five steps, each one message per party through the
coordinator:

0. advertise — two X25519 public keys per party, c (to encrypt shares) and s (pairwise masks), and a
   SHA-256 commitment to b_u, all signed with the party's organisation certificate key over (run id,
   label, role, name, keys) (`sampan.crypto.identity`). The keys come from the party's master secret
   and a nonce the party draws for this label, so they never repeat, even if a label does;
1. share keys — each party checks every neighbour's signature against the consortium CA (a key the
   coordinator substituted is refused with an error naming the peer), checks that the neighbour graph
   the coordinator sends is symmetric, k-regular and connected with its own neighbours as its share
   holders (and records the graph itself),
   Shamir-shares (t of its k neighbours, t > k/2) its mask key s_u and its seed b_u, and seals each
   neighbour's pair of shares, with the graph's digest, under a ChaCha20-Poly1305 key agreed with that
   neighbour's c key; the coordinator relays ciphertext;
2. masked input — each party sends y_u, masking against the (verified) neighbours that completed step 1,
   at least t of those it gave shares to. The request names the round the attempt belongs to; the party
   binds the attempt to that round and to a digest of the public inputs x_u is computed from (the global
   model: its caller computes it), and masks the x_u of its first attempt of that round (or on that model)
   if there was one — cached and persisted before the masked input leaves;
3. consistency (Bonawitz et al.'s round 4) — the coordinator sends the survivor set U3 (who sent a
   masked input); each survivor checks that U3 is connected inside its recorded graph and that it masked
   against every neighbour in U3 (else the masks would cancel inside parts of U3 and unmasking would
   reveal each part's sum), then signs (run id, label, round, model digest, graph digest, m_min, U3) and
   never signs a different U3 for a label;
4. unmasking — each signer checks that a majority (its t) of its own neighbours, and at least
   min_contributors parties with itself (noise_parties under distributed DP), signed that same U3 for
   the same round and model (and that |U3| >= m_min), then reveals, per neighbour v, the share of b_v if
   v is in U3, or the share of s_v if it is not, and only shares dealt under its own graph. Never both: which kind it
   revealed for whom is recorded
   durably (`sampan.privacy.secagg.state`) before the shares leave, and a request that would reveal the
   other kind is refused, also after a restart. Before the shares leave it also locks the round to this
   (U3, graph) and the model and the input itself to this U3: in any later attempt of the round (or on the
   model) it signs and reveals only for the same U3 (and, in the round, the same graph); and the same
   input vector — named by an HMAC under the party's own lock key, of the encoded vector and of its
   content before public scaling — is unmasked for that U3 only, in any round, under any model digest,
   in any run, and so is the model itself (its canonical digest, whatever the training or evaluation
   settings: these locks outlive `close_run`).

The coordinator then removes every survivor's self-mask (b_v rebuilt from t shares) and, for every
party that dropped before masking, the pairwise masks its neighbours added (s_v rebuilt, s_uv
recomputed). A party that dropped *after* masking is in the sum: its b is rebuilt from its
neighbours' shares. If too few parties are left at any step — fewer than m_min = max(min_contributors,
ceil(threshold·n)) with min_contributors >= 3, because with two contributors each one can subtract its
own input from the sum and read the other's — or a rebuilt key does not match what its owner
advertised, the attempt aborts with `SecAggAbort` naming the survivors; the workflow may retry with
them under a fresh label, and fails the round with a clear error below min_contributors.

Fixed point: values are clamped to ±max_abs and encoded as round(x·2^f) in Z_2^64. With m parties the
true sum stays below m·max_abs·2^f, which `SecAggParams.check_capacity` keeps under 2^63, so the
modular sum decodes to the exact sum of the encoded values (error ≤ m·2^-(f+1) per coordinate).

Threat model:
- Parties are semi-honest about their inputs (they may send any vector within the clamp: secure
  aggregation hides inputs, it does not validate them; robust aggregation needs the individual updates,
  so it is refused together with secure aggregation). The coordinator may be malicious towards the
  protocol: relay altered keys, lie about who dropped, send different survivor sets to different
  parties, replay or repeat requests, or restart and re-run an attempt. It holds no member's
  certificate key and does not collude with a data party.
- Key substitution is refused (every public key is signed by its owner's certificate, checked against
  the consortium CA and CRL before any mask or channel is derived from it). A repeated or conflicting
  request is refused: a party masks at most one input per label, signs at most one survivor set per
  label, and reveals at most one kind of share per neighbour per label; this state is written before
  the answer leaves and survives restarts (deployments keep it under the party's state dir).
- Different survivor sets sent to different parties are caught in the consistency round: a party
  reveals nothing unless a majority (its own t) of its own neighbours, and min_contributors parties
  with itself, signed exactly the U3 it signed; honest parties sign one U3 per label, so two sets
  cannot both win (on the complete graph: a majority of everyone; on a sparse SecAgg+ graph: of each
  neighbourhood, as in Bell et al.). Independently, each party shares its secrets with a majority
  threshold (t > k/2, checked by the party), so the coordinator cannot gather t b-shares of v from
  one group and t s-shares from another.
- Differencing across attempts of one round is refused: a coordinator that completes an attempt over
  U, claims it failed and retries the round over U minus v would read v's input as the difference. Every
  party that revealed unmask shares for U refuses another U3 in that round and on that model (round and
  model digest are signed with U3, so the coordinator cannot name them differently to different
  parties), and unmasking needs revealers among U3 forming a majority of every share holder group, while
  the first attempt's revealers refuse the second: for U3 and U3 minus v these would be two disjoint
  majorities of one set, which do not exist (with t > k/2 on a k-regular graph each needs > |U3|/2).
  The graph is the coordinator's to draw, so each party checks that its graph is k-regular, signs its
  digest with U3 and reveals only shares dealt under the same graph: revealers then reveal at most k
  shares each for parties needing more than k/2 each, whatever graphs were handed to whom (without
  these checks a coordinator could make a few "hub" parties hold everyone's shares, unmask with them,
  and use other hubs in the next attempt). The graph must also be connected, U3 connected inside it,
  and each party must have masked against all its neighbours in U3: with two components (or parties
  told to mask only inside their component) one unmasking reveals each component's sum, and re-drawn
  components over the same U3 isolate one input (review R7-1). With these checks every unmasking
  reveals the sum over all of U3 and nothing else, so a retry with the same U3 under another graph
  would sum the same cached inputs again (nothing new); a round's lock fixes the graph anyway.
  A retry with the same U3 sums the same cached inputs (nothing new), a retry after a dropout before
  anyone revealed works, and the workflow stores an unmasked sum before anything else, so a crash-resume
  never needs a second set.
- Differencing across rounds, model digests and runs with the *same* inputs is refused: a coordinator
  that re-sends a model under a digest of its own (an identity scaler, a new round name) or in a new
  run, over U minus v, would get exactly the same inputs of everyone but v. Parties digest the model
  canonically, and each input is locked by an HMAC of itself (not of the request) to the first U3 it
  was unmasked for; its content before the public n/N weighting is locked too, so rescaling every
  input by a new total_rows does not give a new input.
- Differencing across runs with the same model under other settings is refused (review R11): inputs
  computed from one model under another learning rate (one full-batch step at lr/2 is exactly half the
  update) or another binning (a 40-bin histogram merges into the 20-bin one) are known linear maps of
  the first ones, with new bytes. The caller's canonical model digest (`basis`: global model, scaler,
  model config and the input's kind — no training or evaluation settings, no run, no weights) is locked
  too (`model:<HMAC>`, never deleted by `close_run`): one model is unmasked for one survivor set only,
  in any run, under any settings. This holds under distributed DP3 as well, although each of its
  attempts is freshly noised and charged (a difference would be a charged release): the lock costs
  honest runs nothing (the workflow starts each run under secure aggregation from a model drawn from
  its seed, so distinct runs aggregate distinct models) and it keeps the claim "one sum per model"
  independent of the noise. A second run from the same start over another party set is refused with an
  error that says to use another seed.
- NOT covered — multi-round differencing with perturbed models (inherent to secure aggregation under a
  coordinator that picks the model and the participants each round; So et al. 2021, "multi-round privacy
  leakage"): a coordinator that sends a model perturbed by one ulp gets new input vectors (the locks do
  not apply) whose updates are almost identical to the previous ones; unmasking the sum over U and then
  over U minus v gives v's update to within that perturbation. **Without DP3, SecAgg does not protect an
  update from a coordinator that differences rounds with perturbed models**; it protects each update
  from anyone who sees a single sum, and from the exact replays above. With distributed DP3, every
  release (every round and every attempt) is noised by the parties and charged to their ledgers, so such
  a difference is a noised, accounted release. A later fix could be model chaining: parties check that
  each new model follows from the previous aggregate they helped unmask (not built).
- Up to t - 1 colluding neighbours of a party learn nothing about its secrets; t of them plus the
  coordinator could unmask it. Dropouts are assumed independent of the data; the set of survivors is
  public. A coordinator can still drop honest parties to shrink the sum, but never below m_min >= 3
  contributors: each contributor learns the sum of the others (m_min - 1 >= 2 of them) from the model.

What each role learns:
- Coordinator: each party's certificate and signed public keys, sealed envelopes it cannot open, masked
  vectors (uniform in Z_2^64 to it), who answered each step, the parties' signatures over U3, per party
  at most one of its two secrets (b if it is in U3, s if it is not; the other still hides its input),
  and one sum per round (and per model under any settings, and per identical input, in any run) over one connected U3 of
  at least m_min contributors, however often the round is retried. Under DP3 that sum is already noised.
  Without DP3, sums of rounds on models it perturbed can be differenced (see "NOT covered").
- A party: its neighbours' certificates and public keys, one Shamir share of each neighbour's b and s
  (fewer than the t needed), the survivor set U3 and its signatures, and whatever the released model
  reveals about the sum.

DP3 composition: each party adds its share of the Gaussian noise before masking
(`sampan.privacy.dp3.party_release`), with variance σ²/m_min where m_min is the least number of
masked inputs for which the round can complete. The party records that count (noise_parties) with its
input, refuses one above the m_min it shared with, and helps unmask only when that many *certified*
parties signed U3 (names in U3 alone prove nothing: a coordinator could pad it with parties that do not
exist). Any completed round therefore carries noise of
variance at least σ²; when nobody drops, σ²·m/m_min (the price of tolerating dropouts). The
coordinator only ever sees the noised sum. The noise is a floating-point Gaussian rounded to the
2^-f grid (rounding is post-processing); a discrete Gaussian on the grid would also close the
floating-point side channels of continuous samplers (Mironov 2012) and is not done here.
"""

from sampan.privacy.secagg.client import SecAggClient
from sampan.privacy.secagg.graph import choose_neighbours, harary_graph
from sampan.privacy.secagg.params import (
    KEY_BYTES,
    MIN_CONTRIBUTORS,
    STEP_KINDS,
    SecAggAbort,
    SecAggParams,
    SecAggRefused,
    decode_vector,
    encode_vector,
)
from sampan.privacy.secagg.server import SecAggServer, run_secagg

__all__ = [
    "SecAggAbort",
    "SecAggRefused",
    "SecAggParams",
    "SecAggClient",
    "SecAggServer",
    "harary_graph",
    "choose_neighbours",
    "encode_vector",
    "decode_vector",
    "KEY_BYTES",
    "STEP_KINDS",
    "MIN_CONTRIBUTORS",
    "run_secagg",
]
