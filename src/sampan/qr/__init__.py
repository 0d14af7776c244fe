"""Anti-counterfeit QR codes with privacy-preserving verification (issue 20).

One item, one code: a payload signed with the issuer's Ed25519 key (`payload`, `codec`), an issuer registry that
flags reuse, velocity and impossible travel from coarse, pseudonymous scan events with a retention limit
(`registry`); a keyed copy-detection pattern in the code's centre, a simulated print-and-capture channel and the
verifiers that tell an original from a copy (`cdp`, `channel`, `copies`, `verifiers`); distributed verification in
which the device's features are split among several verification sites and the verdict needs a quorum
(`distributed`), with the verification model trained across the sites through the horizontal workflow
(`federated`); and quishing checks of URL and payment payloads (`quishing`, `emv`).

Above the runtime layer because `federated` starts runs through `sampan.runtime.runner`; the rest uses only
NumPy, SciPy, Pillow, segno, zxing-cpp, publicsuffixlist and `cryptography` (imported where used).

May import: anything below it (sampan.runtime and the layers under it).
"""
