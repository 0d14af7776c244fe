"""The bank's applicants files: which files a scoring request may make the bank read, and how it reads them.

Threat model (review R13-SCO-1/2/3/10/13/14): the path and the id column of an applicants file come in the
coordinator's request. The bank reads only files it designated itself (`ApplicantsPolicy`: a folder, deployed from
`[allow] applicants_dir` of its party.toml, or the exact files its own operator named in a simulation or
`sampan score`): the path is resolved (symlinks followed) and must lie inside, be a regular file (never a device
or a pipe such as /dev/zero) and at most `MAX_APPLICANTS_BYTES`; the id column must not be one of the bank's own
schema columns (a feature or the label: their values would be sealed to every partner as "ids"), and must be one
the bank declared when it declared any. Errors name the party, the file, the column and the data row, never a
cell or a header of the file (they reach the coordinator); the header goes to the bank's local log only.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from sampan.errors import DataError

__all__ = ["ID_BYTES", "MAX_APPLICANTS_BYTES", "ApplicantsPolicy", "applicant_ids", "id_problem", "pack_ids",
           "read_applicant_ids", "unpack_ids"]

log = logging.getLogger(__name__)

MAX_APPLICANTS_BYTES = 64 << 20  # 64 MiB: millions of ids; a larger file is refused before it is read
ID_BYTES = 64  # every sealed id is padded to this many UTF-8 bytes (R13-SRV-11); a longer id is refused


def id_problem(applicant: str) -> str | None:
    """Why ``applicant`` cannot be sent as a registration number (None: it can). The same rule at the bank's
    scoring handler and at the service's HTTP layer: non-blank, no control character, at most `ID_BYTES`."""
    if not applicant.strip():
        return "is empty"
    if any(ord(c) < 32 or ord(c) == 127 for c in applicant):
        return "holds a control character (a line break, a tab, ...)"
    if len(applicant.encode()) > ID_BYTES:
        return f"is longer than {ID_BYTES} bytes"
    return None


def pack_ids(party: str, applicants: list[str]) -> np.ndarray:
    """The ids as sealed to the partners: each NUL-padded to `ID_BYTES`, so the envelope's size (which the
    coordinator relays) depends on the number of ids only, never on their lengths (review R13-SRV-11)."""
    bad = [k + 1 for k, a in enumerate(applicants) if id_problem(a)]
    if bad:
        raise DataError(f"party {party!r}: the applicant ids at positions {bad[:5]} are empty, hold a control "
                        f"character or are longer than {ID_BYTES} bytes")
    return np.frombuffer(b"\n".join(a.encode().ljust(ID_BYTES, b"\0") for a in applicants), dtype=np.uint8)


def unpack_ids(packed: np.ndarray) -> list[str]:
    """The ids `pack_ids` sealed (padding removed)."""
    text = packed.tobytes().decode()
    return [a.rstrip("\0") for a in text.split("\n")] if text else []


@dataclass(frozen=True)
class ApplicantsPolicy:
    """Where this bank's applicants files may come from; the default (nothing declared) admits no file."""

    folder: str | None = None            # any regular file inside it (deployed: `[allow] applicants_dir`)
    files: tuple[str, ...] = ()          # or exactly these (named by the bank's own operator)
    id_columns: tuple[str, ...] | None = None  # the id columns it declared; None: any but `protected`
    protected: tuple[str, ...] = ()      # the bank's own schema columns (features, label): never read as ids

    def admit(self, party: str, path: str, id_column: str | None) -> str:
        """The resolved path, if this policy lets the bank read `path` (column `id_column`); DataError otherwise."""
        real = os.path.realpath(path)
        inside = self.folder is not None and real.startswith(os.path.realpath(self.folder).rstrip(os.sep) + os.sep)
        if not inside and real not in {os.path.realpath(f) for f in self.files}:
            where = ("inside its applicants folder ([allow] applicants_dir)" if self.folder else
                     "declared by this party (it declared no applicants folder: [allow] applicants_dir)")
            raise DataError(f"party {party!r} refuses the applicants file {path!r}: it is not {where}")
        if id_column is not None and id_column in self.protected:
            raise DataError(f"party {party!r} refuses applicants column {id_column!r} of {path!r}: it is one of this "
                            "party's schema columns (a feature or the label), whose values are never sent as ids")
        if id_column is not None and self.id_columns is not None and id_column not in self.id_columns:
            raise DataError(f"party {party!r} refuses applicants column {id_column!r} of {path!r}: not one of the "
                            f"id columns it declared {list(self.id_columns)}")
        return real


def applicant_ids(party: str, policy: ApplicantsPolicy | None, meta: Mapping[str, Any]) -> list[str]:
    """The ids of a scoring request: its own list, or the bank's file it names, if the policy admits that file."""
    if "applicants_file" not in meta:
        ids = [str(a) for a in meta["applicants"]]
        bad = [k + 1 for k, a in enumerate(ids) if id_problem(a)]
        if bad:
            raise DataError(f"party {party!r}: the request's applicant ids at positions {bad[:5]} are empty, hold a "
                            f"control character (a line break) or are longer than {ID_BYTES} bytes")
        return ids
    path, column = str(meta["applicants_file"]), meta.get("id_column")
    real = (policy or ApplicantsPolicy()).admit(party, path, None if column is None else str(column))
    return read_applicant_ids(party, path, None if column is None else str(column), resolved=real,
                              protected=(policy or ApplicantsPolicy()).protected)


def read_applicant_ids(party: str, path: str, id_column: str | None = None, *, resolved: str | None = None,
                       protected: tuple[str, ...] = ()) -> list[str]:
    """The ids in ``id_column`` (default: the first column) of a CSV on this party's machine, read bounded.

    Errors name the party, the file, the column and the data row (1 = the first row under the header), never the
    file's content."""
    real = resolved or os.path.realpath(path)
    try:
        info = os.stat(real)
        if not stat.S_ISREG(info.st_mode):
            raise DataError(f"party {party!r}: the applicants file {path!r} is not a regular file")
        if info.st_size > MAX_APPLICANTS_BYTES:
            raise DataError(f"party {party!r}: the applicants file {path!r} is larger than "
                            f"{MAX_APPLICANTS_BYTES >> 20} MiB")
        with open(real, "rb") as handle:
            raw = handle.read(MAX_APPLICANTS_BYTES + 1)
    except OSError as exc:
        raise DataError(f"party {party!r}: cannot read the applicants file {path!r}: {exc.strerror or exc}") from None
    if len(raw) > MAX_APPLICANTS_BYTES:
        raise DataError(f"party {party!r}: the applicants file {path!r} is larger than "
                        f"{MAX_APPLICANTS_BYTES >> 20} MiB")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise DataError(f"party {party!r}: the applicants file {path!r} is not UTF-8 text (line {line})") from None
    table = list(csv.reader(io.StringIO(text, newline="")))
    if not table:
        raise DataError(f"party {party!r}: the applicants file {path!r} is empty")
    header = [h.strip() for h in table[0]]
    column = id_column or header[0]
    if column not in header:
        log.warning("party %s: applicants file %s has columns %s (local log only)", party, path, header)
        raise DataError(f"party {party!r}: the applicants file {path!r} has no column {column!r} (its {len(header)} "
                        "columns are listed in this party's local log)")
    if column in protected:
        raise DataError(f"party {party!r} refuses applicants column {column!r} of {path!r}: it is one of this "
                        "party's schema columns (a feature or the label), whose values are never sent as ids")
    k = header.index(column)
    ids = [row[k].strip() if k < len(row) else "" for row in table[1:]]
    empty = [r + 1 for r, v in enumerate(ids) if not v]
    broken = [r + 1 for r, v in enumerate(ids) if "\n" in v or "\r" in v]
    if empty or broken or not ids:
        problem = (f"empty id in data row(s) {empty[:5]}" if empty else
                   f"an id holding a line break in data row(s) {broken[:5]}" if broken else "no applicants")
        raise DataError(f"party {party!r}: the applicants file {path!r}, column {column!r}: {problem}")
    return ids
