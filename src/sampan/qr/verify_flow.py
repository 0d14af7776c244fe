"""One verification of a captured item code, as `sampan qr verify` runs it: decode, signature and expiry, copy
detection, registry flags, gathered into one JSON-ready verdict (format `sampan.qr.report.VERDICT_FORMAT`).

Kept out of the CLI so that the decision (what makes a scan "genuine" or "suspicious") is one tested function.
Genuine means every check that was asked for passed: a Sampan code signed by a trusted issuer, not expired, and,
when a CDP key is given, a copy-detection verdict "original", and, with a registry, an issued serial whose code
matches and no flag. Anything else is suspicious, with one reason per failed check. An image with no readable QR
code at all is bad input (a `DataError`), not a verdict.

The CDP verdict is "original" when the keyed correlation reaches `cdp_threshold`, "copy" below it, and "retake"
when the pattern cannot be judged (the capture is too blurred by the QR edge-sharpness statistic, or the CDP square
cannot be located). The default thresholds come from the simulated print-and-capture channel
(bench/qr_anticounterfeit.py), not from real printers and phones.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

import numpy as np

from sampan.errors import DataError
from sampan.qr.report import VERDICT_FORMAT

__all__ = ["cdp_check", "cdp_key_id", "run_checks"]


def cdp_key_id(key: bytes) -> str:
    """A public id of a CDP key (8 hex characters of SHA-256), carried in the code as its seed id."""
    import hashlib

    return hashlib.sha256(b"sampan-qr-cdp-key-id\x00" + key).hexdigest()[:8]


def cdp_check(gray: np.ndarray, key: bytes, serial: str, *, threshold: float, min_sharpness: float) -> dict[str, Any]:
    """{"verdict": original|copy|retake, "correlation", "sharpness", "threshold"} for one capture."""
    from sampan.qr.cdp import CdpError
    from sampan.qr.features import STAT_NAMES, extract_features
    from sampan.qr.verifiers import CorrelationVerifier

    try:
        features = extract_features(gray)
    except CdpError as exc:
        return {"verdict": "retake", "reason": f"the copy-detection pattern cannot be read ({exc})"}
    sharpness = float(features[STAT_NAMES.index("edge_sharpness")])
    corr = float(CorrelationVerifier(key).score(features, serial))
    out: dict[str, Any] = {"correlation": round(corr, 4), "sharpness": round(sharpness, 4),
                           "threshold": threshold, "min_sharpness": min_sharpness}
    if sharpness < min_sharpness:
        out["verdict"] = "retake"
        out["reason"] = f"capture too blurred to judge the pattern (sharpness {sharpness:.3f} < {min_sharpness})"
    else:
        out["verdict"] = "original" if corr >= threshold else "copy"
    return out


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def run_checks(gray: np.ndarray, image_name: str, public_keys: Mapping[str, Any], *, cdp: bytes | None = None,
               registry_url: str | None = None, region: str | None = None, consume: bool = False,
               cdp_threshold: float = 0.51, min_sharpness: float = 0.35,
               now: dt.datetime | None = None) -> dict[str, Any]:
    """The verdict of one capture (see the module docstring)."""
    from sampan.qr.codec import decode_qr
    from sampan.qr.payload import PREFIX, ItemCodeError, decode_unverified, verify

    now = now or _now()
    event = None
    if registry_url is not None:
        from sampan.qr.registry import ScanEvent

        event = ScanEvent(region or "", now, "genuine")   # checks the region before anything is recorded
    texts = decode_qr(gray)
    if not texts:
        raise DataError(f"image {image_name!r}: no readable QR code")
    ours = [t for t in texts if t.startswith(PREFIX)]
    reasons: list[str] = []
    checks: dict[str, Any] = {"decode": {"codes_found": len(texts), "sampan_codes": len(ours)}}
    record: dict[str, Any] = {"format": VERDICT_FORMAT, "image": image_name,
                              "checked_at": now.strftime("%Y-%m-%dT%H:%MZ"), "verdict": "suspicious",
                              "reasons": reasons, "code": None, "checks": checks}
    if len(set(ours)) != 1:
        reasons.append("no Sampan item code in the image" if not ours else
                       f"{len(set(ours))} different item codes in one image")
        return record
    text = ours[0]
    try:
        shown = decode_unverified(text)
        record["code"] = {"serial": shown.serial, "issuer": shown.issuer, "expiry": shown.expiry.isoformat(),
                          "cdp_key_id": shown.cdp_seed_id}
        code = verify(text, public_keys, now=now)
        checks["signature"] = "valid"
        checks["expiry"] = "not expired"
    except ItemCodeError as exc:
        checks["signature"] = f"refused: {type(exc).__name__}"
        reasons.append(str(exc))
        return record
    cdp_verdict = None
    if cdp is not None:
        if code.cdp_seed_id is None:
            checks["cdp"] = {"verdict": "absent"}
            reasons.append("the code carries no copy-detection pattern")
        elif code.cdp_seed_id != cdp_key_id(cdp):
            raise DataError(f"--cdp-key: key id {cdp_key_id(cdp)} is not the code's CDP key id {code.cdp_seed_id}")
        else:
            checks["cdp"] = cdp_check(gray, cdp, code.serial, threshold=cdp_threshold, min_sharpness=min_sharpness)
            cdp_verdict = checks["cdp"]["verdict"]
            if cdp_verdict == "copy":
                reasons.append(f"copy-detection pattern: looks like a copy (correlation "
                               f"{checks['cdp']['correlation']} < {cdp_threshold})")
            elif cdp_verdict == "retake":
                reasons.append(f"copy-detection pattern: retake the photo ({checks['cdp'].get('reason', '')})")
    if registry_url is not None and event is not None:
        from dataclasses import replace

        from sampan.qr.registry import IssuerRegistry

        reg = IssuerRegistry.open(registry_url, code.issuer)
        try:
            verdict = "genuine" if not reasons else "copy" if cdp_verdict == "copy" else "suspect"
            event = replace(event, verdict=verdict)
            _, scan = reg.check_code(text, public_keys, event, consume=consume, now=now)
            checks["registry"] = {"flags": list(scan.flags), "scans_in_window": scan.scans_in_window}
            reasons.extend(scan.reasons)
        except ItemCodeError as exc:
            checks["registry"] = {"refused": type(exc).__name__}
            reasons.append(str(exc))
        finally:
            reg.close()
    record["verdict"] = "genuine" if not reasons else "suspicious"
    return record
