"""The shared crypto layer (issue 12, item 5): sealed channels + PRG, the fixed-point ring, Shamir and the dealer
live in `sampan.crypto` and are what PSI, SecAgg and secure LR all use.

`tests/test_layers.py` checks the import graph statically; this file checks it at run time (what importing a
module really loads, lazy imports excluded) and that the old homes of the primitives are gone, not shims.
"""

from __future__ import annotations

import importlib
import subprocess
import sys

import numpy as np
import pytest

ABOVE_CRYPTO = ("transport", "runtime", "deploy", "vertical", "horizontal", "synth", "audit", "report", "cli",
                "privacy", "models", "metrics", "data", "config")
CRYPTO_MODULES = ("sampan.crypto.identity", "sampan.crypto.simulated_ca", "sampan.crypto.channel", "sampan.crypto.ring",
                  "sampan.crypto.shamir", "sampan.crypto.dealer")


@pytest.mark.parametrize("module, forbidden", [
    *[(m, ABOVE_CRYPTO) for m in CRYPTO_MODULES],
    ("sampan.privacy.secagg", ("transport", "runtime", "deploy", "vertical", "horizontal", "synth", "cli")),
])
def test_module_loads_nothing_above_it(module: str, forbidden: tuple[str, ...]) -> None:
    code = (f"import sys, {module}; "
            f"bad = sorted(m for m in sys.modules if m.startswith('sampan.') and m.split('.')[1] in {forbidden!r}); "
            "print(bad); sys.exit(1 if bad else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("old", ["sampan.vertical.channel", "sampan.vertical.ring", "sampan.vertical.dealer",
                                 "sampan.privacy.shamir", "sampan.privacy.secagg_state"])
def test_old_homes_are_gone(old: str) -> None:
    """No re-export shims: every importer names the crypto module (one path per primitive)."""
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module(old)


def test_protocols_share_one_implementation() -> None:
    """PSI, SecAgg and secure LR import the very same channel, ring and dealer objects."""
    import sampan.crypto.channel as channel
    import sampan.crypto.dealer as dealer
    import sampan.crypto.ring as ring
    import sampan.privacy.secagg.client as secagg_client
    import sampan.vertical.psi_party as psi
    import sampan.vertical.secure_lr_base as secure_lr_base
    import sampan.vertical.secure_lr_party as secure_lr

    assert psi.SealedChannels is channel.SealedChannels
    assert secure_lr_base.SealedChannels is channel.SealedChannels and secure_lr.DealerStream is dealer.DealerStream
    assert secure_lr.encode is ring.encode
    assert secagg_client.prg_uint64 is channel.prg_uint64


def test_ring_shamir_and_dealer_work_from_the_crypto_package() -> None:
    from sampan.crypto import ring, shamir
    from sampan.crypto.dealer import Dealer

    x = np.array([-1.5, 0.0, 2.25])
    assert np.allclose(ring.decode(ring.encode(x, 16), 16), x)
    secret = bytes(range(32))
    shares = shamir.split(secret, 2, [1, 2, 3])
    assert shamir.combine({1: shares[1], 3: shares[3]}, 2) == secret
    # the dealer's powers: the seeded party's half (drawn locally) plus the returned half are shares of a, a^2
    dealer = Dealer(["bank", "pay"])
    returned = dealer.powers("z", 5, 2, seeded="bank")
    local = dealer.stream("bank").draw_many("z", 2, 5)
    a = local[0] + returned[0]
    assert np.array_equal(local[1] + returned[1], a * a)
