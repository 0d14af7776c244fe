"""Layers point down: `sampan.crypto` pulls in no protocol, transport, runtime, deploy or CLI module, and
`sampan.privacy.secagg` no vertical protocol (its sealed channels come from crypto)."""

from __future__ import annotations

import subprocess
import sys

import pytest

ABOVE = ("transport", "runtime", "deploy", "vertical", "horizontal", "synth", "report", "cli")


@pytest.mark.parametrize("module, allowed", [("sampan.crypto.identity", ()), ("sampan.crypto.simulated_ca", ()), ("sampan.crypto.channel", ()),
                                             ("sampan.privacy.secagg", ("horizontal",))])
def test_module_imports_nothing_above_it(module: str, allowed: tuple[str, ...]) -> None:
    forbidden = [layer for layer in ABOVE if layer not in allowed]
    code = (f"import sys, {module}; "
            f"bad = sorted(m for m in sys.modules if m.startswith('sampan.') and "
            f"m.split('.')[1].split('_')[0] in {forbidden!r}); print(bad); sys.exit(1 if bad else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
