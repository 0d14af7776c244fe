"""Layers point down, and each package's `__init__` note says truly what it may import (issue 12, item 5).

The contract is `LAYERS` below (top to bottom). Each top-level package states in its `__init__` docstring
what it is for and, on a line starting "May import:", the `sampan.<package>` names it may import (or
"anything", meaning every layer below it). The notes are the one source of truth for the allowed edges:
this test checks (1) every package and top-level module has a place in `LAYERS`, (2) every note
names only packages strictly below its own layer (the note agrees with the contract), and (3) every
import in the code, at module level or inside a function, names only what its package's note allows
(the note is true). Modules without a folder (`errors`, `files`) may import nothing from Sampan.

Packages in one layer are independent: neither imports the other. Importing the root package `sampan`
(e.g. `from sampan import __version__`) is always allowed, since every `sampan.x` loads it anyway.

An AST test instead of import-linter: no extra dependency, and it reads the notes themselves.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "sampan"

# Top to bottom. A package may import only packages in lower layers, and only those its note names.
# `config` sits between the capabilities and the libraries: workflows read it, it knows schemas and models.
# The (privacy | models | metrics | data | report) layer of the issue is split in two so that its two
# real edges (privacy -> models: DP-SGD clips a model's per-example gradients; report -> metrics: reports
# plot them) are ordinary downward imports instead of exceptions; likewise wire sits above errors | files.
LAYERS: list[tuple[str, ...]] = [
    ("cli",),
    ("web", "serve"),
    ("verify",),
    ("deploy", "monitoring", "fraud", "qr"),  # fraud and qr train through the runner (their `federated` modules)
    ("runtime",),
    ("checks",),  # checks before training: reuses the capabilities' protocols (vertical PSI, horizontal tables)
    ("horizontal", "vertical", "synth", "audit", "watermark"),
    ("config",),
    ("privacy", "report"),
    ("models", "metrics", "data"),
    ("compute",),  # a party's own compute engine (row blocks, local or a cluster inside the party)
    ("crypto",),
    ("transport",),
    ("core",),
    ("wire",),
    ("errors", "files"),
]

# Imports that break the contract today, in files other helpers are still moving (issue 12, phase 1).
# Each entry: (importing package, imported package) -> why it is tolerated and until when. Remove an
# entry as soon as its import is gone (test_no_stale_exceptions fails on an entry nobody needs).
# End state: empty.
KNOWN_VIOLATIONS: dict[tuple[str, str], str] = {
    # TODO(2026-12-07): config/vertical.py builds VerticalLRConfig (lazily, to_lr_config) and config/run_config.py
    # checks the secure LR's ring capacity and minimum batch rows with it at parse time, but vertical imports
    # sampan.config: a cycle. Config is the lower one; the LR limits (crypto.ring.SIGMOID_POLY, min_batch_rows)
    # must move below config, or the check into the vertical capability, before this entry can go.
    ("config", "vertical"): "config/vertical.py, config/run_config.py",
}


def _layer_of(name: str) -> int:
    for index, layer in enumerate(LAYERS):
        if name in layer:
            return index
    raise KeyError(name)


def _below(name: str) -> set[str]:
    return {p for layer in LAYERS[_layer_of(name) + 1:] for p in layer}


def _packages() -> list[str]:
    return sorted(p.name for p in SRC.iterdir() if (p / "__init__.py").is_file())


def _top_modules() -> list[str]:
    return sorted(p.stem for p in SRC.glob("*.py") if p.stem not in ("__init__", "__main__"))


def _note(package: str) -> str:
    return ast.get_docstring(ast.parse((SRC / package / "__init__.py").read_text(encoding="utf-8"))) or ""


def declared_imports(package: str) -> set[str]:
    """The `sampan.<package>` names in the note's "May import" sentence, up to the end of its paragraph
    ("anything": every lower layer)."""
    note = _note(package)
    match = re.search(r"^May import\b(.*?)(?:\n\s*\n|\Z)", note, flags=re.MULTILINE | re.DOTALL)
    if match is None:
        raise AssertionError(f"src/sampan/{package}/__init__.py: its docstring needs a line starting "
                             "'May import:' (what this package may import)")
    line = match.group(1)
    if re.search(r"\banything\b", line):
        return _below(package)
    return set(re.findall(r"\bsampan\.(\w+)", line))


def allowed_imports(name: str) -> set[str]:
    """What `name` may import; a package without a note may import nothing (its own test names the gap)."""
    try:
        return declared_imports(name) if (SRC / name / "__init__.py").is_file() else set()
    except AssertionError:
        return set()


@dataclass(frozen=True)
class Import:
    source: str  # importing top-level package or module
    target: str  # imported top-level package or module
    where: str  # file:line


def _module_name(path: Path, src: Path) -> list[str]:
    parts = list(path.relative_to(src.parent).with_suffix("").parts)
    return parts[:-1] if parts[-1] == "__init__" else parts


def sampan_imports(src: Path = SRC) -> list[Import]:
    """Every import of another top-level Sampan package, with its file and line (lazy imports included)."""
    found = []
    for path in sorted(src.rglob("*.py")):
        module = _module_name(path, src)
        if len(module) < 2:
            continue  # the root package is the public API: it may import anything, lazily
        source = module[1]
        package = module if path.name == "__init__.py" else module[:-1]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package[: len(package) - (node.level - 1)]
                    base = ".".join(anchor + ([node.module] if node.module else []))
                targets = [f"{base}.{alias.name}" for alias in node.names] if base == "sampan" else [base]
            else:
                continue
            for target in targets:
                parts = target.split(".")
                if parts[0] != "sampan" or len(parts) < 2 or parts[1] == source or parts[1].startswith("__"):
                    continue
                found.append(Import(source, parts[1], f"{path.relative_to(src.parent.parent)}:{node.lineno}"))
    return found


def violations() -> dict[tuple[str, str], list[str]]:
    out: dict[tuple[str, str], list[str]] = {}
    for imp in sampan_imports():
        if imp.target not in allowed_imports(imp.source):
            out.setdefault((imp.source, imp.target), []).append(imp.where)
    return out


def test_every_package_and_top_level_module_has_a_layer() -> None:
    placed = {p for layer in LAYERS for p in layer}
    unplaced = sorted((set(_packages()) | set(_top_modules())) - placed)
    assert not unplaced, f"add {unplaced} to LAYERS in tests/test_layers.py (where in the stack does it belong?)"


@pytest.mark.parametrize("package", _packages())
def test_package_note_states_its_purpose_and_imports(package: str) -> None:
    note = _note(package)
    assert note.strip(), f"src/sampan/{package}/__init__.py needs a docstring: what the folder is for"
    declared = declared_imports(package)
    unknown = sorted(declared - {p for layer in LAYERS for p in layer})
    assert not unknown, f"{package}'s note names {unknown}, which are not Sampan packages in the contract"


@pytest.mark.parametrize("package", _packages())
def test_package_note_agrees_with_the_contract(package: str) -> None:
    upward = sorted(declared_imports(package) - _below(package))
    assert not upward, (f"src/sampan/{package}/__init__.py says it may import {upward}, which are not below "
                        f"{package} in LAYERS (tests/test_layers.py)")


def test_code_imports_only_what_its_notes_allow() -> None:
    found = {edge: where for edge, where in violations().items() if edge not in KNOWN_VIOLATIONS}
    lines = [f"  {src} -> sampan.{dst}: {', '.join(where[:4])}{' ...' if len(where) > 4 else ''}"
             for (src, dst), where in sorted(found.items())]
    assert not found, ("imports that break the layers (allowed: the package's __init__ note, checked against "
                       "LAYERS in tests/test_layers.py):\n" + "\n".join(lines))


def test_no_stale_exceptions() -> None:
    stale = sorted(set(KNOWN_VIOLATIONS) - set(violations()))
    assert not stale, f"these KNOWN_VIOLATIONS no longer occur; delete them from tests/test_layers.py: {stale}"


def test_the_checker_sees_lazy_relative_and_from_root_imports(tmp_path: Path) -> None:
    """The scanner itself: imports inside functions, relative imports and `from sampan import x` all count."""
    pkg = tmp_path / "src" / "sampan" / "models"
    (pkg / "sub").mkdir(parents=True)
    (tmp_path / "src" / "sampan" / "__init__.py").write_text("from sampan import runtime\n")
    (pkg / "__init__.py").write_text("from sampan import __version__, runtime\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "fit.py").write_text("from ...privacy import ledger\nfrom . import other\nfrom ..sub import x\n"
                                        "def f():\n    import sampan.deploy.local\n")
    found = {(i.source, i.target, i.where.split(":")[-1]) for i in sampan_imports(tmp_path / "src" / "sampan")}
    assert found == {("models", "runtime", "1"), ("models", "privacy", "1"), ("models", "deploy", "5")}
