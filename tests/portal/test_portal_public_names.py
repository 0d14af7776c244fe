"""The portal reaches the verifier only through public names (a private module may change without notice)."""

from __future__ import annotations

import ast
from pathlib import Path

from _core_fixtures import synthetic

import sampan.web.portal
from sampan.verify import report

PORTAL = Path(sampan.web.portal.__file__).parent


def _private_imports(path: Path) -> list[str]:
    """`from a._b import x` / `import a._b` where a module outside the portal package is private."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names = [node.module or ""] if isinstance(node, ast.ImportFrom) else \
            [a.name for a in node.names] if isinstance(node, ast.Import) else []
        for name in names:
            outside = name.startswith("sampan.") and not name.startswith("sampan.web.portal")
            if outside and any(part.startswith("_") for part in name.split(".")):
                found.append(f"{path.name}:{node.lineno}: {name}")
    return found


def test_portal_imports_no_private_module() -> None:
    offenders = [hit for path in sorted(PORTAL.glob("*.py")) for hit in _private_imports(path)]
    assert offenders == []


def test_overall_is_public_in_the_report_package() -> None:
    assert "overall" in report.__all__
    assert report.overall(synthetic("weak", verdicts={"F-API-VERSION": "fail"})) == "failed"
    passing = {"S-SECAGG-MASKED": "pass", "S-TLS-WRONG-CA": "pass"}
    assert report.overall(synthetic("weak", verdicts=passing)) == "passed"
    none_run = dict.fromkeys(["F-API-VERSION", "F-AUC-HORIZONTAL", "P-BYTES-PER-ROUND", "S-SECAGG-MASKED", "S-MIA",
                              "S-TLS-WRONG-CA"], "skip")
    assert report.overall(synthetic("weak", verdicts=none_run)) == "no result"
