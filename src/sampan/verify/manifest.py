"""The evaluation manifest: versions, seed, drawn columns, profile, thresholds; and `reproduce` from it.

Everything that decides what an evaluation did is here, so a rerun from the manifest draws the same columns
and splits (the seed is a reproducible evaluation seed, drawn with `secrets` when the caller gives none), and
a changed threshold or dataset shows up as a difference instead of silently changing a verdict.
"""

from __future__ import annotations

import json
import platform as _platform
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from sampan.errors import ConfigError
from sampan.files import atomic_write_text
from sampan.verify.catalogue.data import BenchData, make_bench_data
from sampan.verify.thresholds import thresholds_table

__all__ = ["MANIFEST_VERSION", "build_manifest", "save_manifest", "load_manifest", "reproduce"]

MANIFEST_VERSION = 1


def _versions(info: dict[str, Any] | None) -> dict[str, Any]:
    from sampan import __version__

    out: dict[str, Any] = {"sampan": __version__, "python": sys.version.split()[0], "numpy": np.__version__,
                           "machine": f"{_platform.system()} {_platform.machine()}"}
    if info:
        out["platform"] = {k: info.get(k) for k in ("platform", "platform_version", "api_version", "party_kit")}
    return out


def build_manifest(*, profile: str, seed: int, data: BenchData, info: dict[str, Any] | None, tests: list[str],
                   target_url: str, dataset: str = "german") -> dict[str, Any]:
    """Written before the first test runs (thresholds included), so no result can change it."""
    return {
        "manifest_version": MANIFEST_VERSION,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "profile": profile,
        "seed": int(seed),
        "dataset": dataset,
        "target": target_url,
        "versions": _versions(info),
        "info": info or {},
        "draws": data.draws(),
        "tests": list(tests),
        "thresholds": thresholds_table(),
    }


def save_manifest(manifest: dict[str, Any], path: str | Path) -> Path:
    return atomic_write_text(path, json.dumps(manifest, indent=2) + "\n")


def load_manifest(path: str | Path) -> dict[str, Any]:
    """A manifest JSON (or a results JSON carrying one under "manifest"); errors name the file and field."""
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{p}: no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{p}: not a readable JSON manifest ({exc})") from None
    if isinstance(data, dict) and isinstance(data.get("manifest"), dict):
        data = data["manifest"]
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: a manifest must be a JSON object")
    for key, kind in (("seed", int), ("profile", str), ("draws", dict)):
        if not isinstance(data.get(key), kind) or isinstance(data.get(key), bool):
            raise ConfigError(f"{p}: manifest field '{key}' is missing or not a {kind.__name__}")
    if data.get("manifest_version") != MANIFEST_VERSION:
        raise ConfigError(f"{p}: manifest_version {data.get('manifest_version')!r}, expected {MANIFEST_VERSION}")
    return data


def reproduce(manifest: dict[str, Any], data_dir: str | Path | None = None) -> BenchData:
    """The same draws as the manifest's evaluation; a ConfigError naming the field if the data changed."""
    data = make_bench_data(int(manifest["seed"]), str(manifest.get("dataset", "german")), data_dir)
    recorded = manifest.get("draws", {})
    now = data.draws()
    differs = sorted(k for k in set(recorded) | set(now) if recorded.get(k) != now.get(k))
    if differs:
        raise ConfigError(f"the manifest's draws cannot be reproduced (dataset or code changed): {', '.join(differs)}")
    return data
