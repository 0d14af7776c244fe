"""`sampan score`: score new applicants from a file (horizontal or vertical model), or vertical demo ids.

    sampan score --model NAME[@VERSION] --data applicants.csv [--out scores.csv|scores.json|scores.jsonl]
    sampan score --run RUN_ID --model lr|scorecard|gbdt --data applicants.csv [--out ...]   (vertical)
    sampan score APPLICANT... [--run RUN_ID] [--model lr|scorecard|gbdt]                      (vertical demo)

The applicants file needs no label and may have any number of rows: it is read in chunks and the output
is written as it goes, to a temporary file renamed into place at the end (an error leaves nothing
half-written). PDs are written to full float64 precision (``repr``); points use the PDO scale of
`sampan.models.explain.ScoreCard`; reason codes are the top adverse contributions.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from sampan.cli.error_path import treat_as_usage
from sampan.cli.run import StoreOption, _store, console

if TYPE_CHECKING:
    import numpy as np

    from sampan.runtime.store import Store

__all__ = ["score", "score_app"]

score_app = typer.Typer(help="Score loan applications.", no_args_is_help=False, add_completion=False,
                        pretty_exceptions_enable=False)

_VERTICAL_KINDS = ("lr", "scorecard", "gbdt")


def read_chunks(path: Path, chunk_rows: int) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
    """(first data row, 1-based; columns as text/None) per chunk of a CSV or Parquet file."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    from sampan.errors import DataError

    def columns(batch: Any) -> dict[str, np.ndarray]:
        return {n: batch.column(i).to_numpy(zero_copy_only=False) for i, n in enumerate(batch.schema.names)}

    start, pending, buffered = 1, [], 0
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            source = pq.ParquetFile(path).iter_batches(batch_size=chunk_rows)
        else:
            source = iter(pacsv.open_csv(path, read_options=pacsv.ReadOptions(block_size=1 << 20),
                                         convert_options=pacsv.ConvertOptions(column_types=_all_text(path))))
        for batch in source:
            pending.append(batch)
            buffered += batch.num_rows
            while buffered >= chunk_rows:
                table = pa.Table.from_batches(pending).combine_chunks()
                head, rest = table.slice(0, chunk_rows), table.slice(chunk_rows)
                yield start, columns(head)
                start += head.num_rows
                pending, buffered = rest.to_batches(), rest.num_rows
        if buffered:
            table = pa.Table.from_batches(pending).combine_chunks()
            yield start, columns(table)
    except UnicodeDecodeError as exc:
        raise DataError(f"file {str(path)!r}: not UTF-8 text ({exc.reason}); save the file as UTF-8") from None
    except (OSError, pa.ArrowInvalid) as exc:
        text = str(exc)
        if "UTF8" in text or "UTF-8" in text or "utf-8" in text:  # the row's bytes stay out of the message
            raise DataError(f"file {str(path)!r}: data row(s) from {start} on are not UTF-8 text; save the file as "
                            "UTF-8") from None
        raise DataError(f"file {str(path)!r}: cannot read the applicants ({exc})") from None


def _all_text(path: Path) -> dict[str, Any]:
    """Every column read as text (the scorer parses numbers itself, so a marker like '?' never breaks a chunk).

    The header is read as pyarrow reads it (a UTF-8 byte-order mark dropped, review R13-SCO-12, so a first id
    column keeps its leading zeros); a column named twice is refused (R13-SCO-5: which copy scores would depend on
    the column order), and so is a file that is not UTF-8 (R13-SCO-6), naming the file and the line."""
    import csv

    import pyarrow as pa

    from sampan.errors import DataError

    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            header = [h.strip() for h in next(csv.reader(handle), [])]
    except UnicodeDecodeError:
        raise DataError(f"file {str(path)!r}: line 1 (the header) is not UTF-8 text; save the file as UTF-8") from None
    twice = sorted({h for h in header if header.count(h) > 1})
    if twice:
        raise DataError(f"file {str(path)!r}: the header names column(s) {twice} more than once")
    return {name: pa.string() for name in header}


class ScoreWriter:
    """Rows of results into CSV, JSON (one array) or JSON lines, through a temporary file renamed at the end."""

    def __init__(self, path: Path, reasons: int) -> None:
        self.path, self.reasons = path, reasons
        self.format = {".json": "json", ".jsonl": "jsonl", ".csv": "csv"}.get(path.suffix.lower())
        if self.format is None:
            from sampan.errors import ConfigError

            raise ConfigError(f"--out {str(path)!r}: name the file .csv, .json or .jsonl")
        if path.is_dir():  # review R13-SCO-7: refused before anything is written
            from sampan.errors import ConfigError

            raise ConfigError(f"--out {str(path)!r} is a directory; name a file")
        self.temp = path.with_name(f".{path.name}.partial")
        self.count = 0

    def __enter__(self) -> ScoreWriter:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.handle = open(self.temp, "w", newline="", encoding="utf-8")  # noqa: SIM115 - closed in __exit__
        if self.format == "csv":
            import csv

            self.csv = csv.writer(self.handle)
            self.csv.writerow(["id", "pd", "score", "decision",
                               *[f"reason_{k}{s}" for k in range(1, self.reasons + 1) for s in ("", "_contribution")]])
        elif self.format == "json":
            self.handle.write("[")
        return self

    def write(self, results: list[dict[str, Any]]) -> None:
        import json

        for r in results:
            if self.format == "csv":
                reasons = [v for reason in r["reasons"][: self.reasons]
                           for v in (reason["feature"], repr(float(reason["contribution"])))]
                reasons += [""] * (2 * self.reasons - len(reasons))
                self.csv.writerow([r["id"], repr(float(r["pd"])), repr(float(r["score"])), r["decision"] or "",
                                   *reasons])
            else:
                sep = ("\n" if self.count == 0 else ",\n") if self.format == "json" else ""
                self.handle.write(sep + json.dumps(r, allow_nan=False) + ("\n" if self.format == "jsonl" else ""))
            self.count += 1

    def __exit__(self, kind: Any, error: Any, trace: Any) -> None:
        if self.format == "json" and kind is None:
            self.handle.write("\n]\n")
        self.handle.close()
        try:
            if kind is None:
                self.temp.replace(self.path)
        finally:  # review R13-SCO-7: a failed rename leaves no half-done file either
            self.temp.unlink(missing_ok=True)


def _horizontal(run_store: Store, model: str, data: Path, id_column: str | None, reasons: int,
                chunk_rows: int) -> Iterator[list[dict[str, Any]]]:
    from sampan.runtime.scorers import load_scorer

    scorer = load_scorer(run_store, model, id_column=id_column, reasons=reasons)
    console.print(f"Scoring with [bold]{scorer.predictor.name}[/] v{scorer.predictor.version} "
                  f"({scorer.describe()['kind']}; reasons: {scorer.method}).", highlight=False)
    from sampan.errors import DataError

    seen: dict[str, int] = {}
    for first, columns in read_chunks(data, chunk_rows):
        if id_column is not None and id_column not in columns:
            raise DataError(f"file {str(data)!r}: no column {id_column!r} (--id-column); it has "
                            f"{', '.join(repr(c) for c in columns)}")
        rows = [r.as_dict() for r in scorer.score_columns(columns, where=f"file {str(data)!r}: ", first_row=first)]
        _check_ids(data, [str(r["id"]) for r in rows], first, seen)
        yield rows


def _check_ids(data: Path, ids: list[str], first: int, seen: dict[str, int]) -> None:
    """Review R13-SCO-8, the same in the horizontal and vertical paths: an empty applicant id is an error (its
    result could not be attributed), a repeated id a warning (each copy is scored, one output row each); both name
    the data rows (1 = the first row under the header)."""
    from sampan.errors import DataError

    empty = [first + k for k, v in enumerate(ids) if not v.strip()]
    if empty:
        raise DataError(f"file {str(data)!r}: empty applicant id in data row(s) {empty[:5]}")
    repeats = []
    for k, v in enumerate(ids):
        if v in seen:
            repeats.append(f"{first + k} (as {seen[v]})")
        else:
            seen[v] = first + k
    if repeats:
        console.print(f"warning: file {str(data)!r}: {len(repeats)} repeated applicant id(s) in data row(s) "
                      f"{', '.join(repeats[:5])}; each copy is scored", highlight=False, markup=False)


def _vertical(run_store: Store, run_id: str, kind: str, data: Path, id_column: str | None,
              chunk_rows: int) -> Iterator[list[dict[str, Any]]]:
    from sampan.cli.vertical import score_applicants
    from sampan.errors import DataError
    from sampan.runtime.scorers import training_id_column

    column = id_column or training_id_column(run_store, run_id) or "id"
    seen: dict[str, int] = {}
    for first, columns in read_chunks(data, chunk_rows):
        if column not in columns:
            raise DataError(f"file {str(data)!r}: no id column {column!r} (the vertical run's id; pass --id-column)")
        ids = ["" if v is None else str(v).strip() for v in columns[column]]
        _check_ids(data, ids, first, seen)
        results = score_applicants(run_store, run_id, ids, kind, unknown_at_bank_ok=True, applicants_file=str(data))
        unknown = [first + k for k, r in enumerate(results) if r.unknown_at_bank]
        if unknown:  # the bank scores applicants it holds: its part reads them from its own current table
            raise DataError(f"file {str(data)!r}: column {column!r}: {len(unknown)} applicant(s) not in the bank's "
                            f"table (row(s) {', '.join(map(str, unknown[:5]))}); give the bank's own columns for "
                            "new applicants in the file, or add their rows to the bank's table")
        yield [vertical_row(r) for r in results]


def vertical_row(result: Any) -> dict[str, Any]:
    """A vertical joint-score result in the output's shape (reasons: the bank's features, then partners')."""
    reasons = [{"code": f"R{k:02d}", "feature": r["feature"], "contribution": float(r["logit_contribution"]),
                "effect": "raises risk" if r["logit_contribution"] > 0 else "lowers risk", "source": r["source"]}
               for k, r in enumerate(result.reasons, start=1)]
    return {"id": result.applicant, "pd": result.probability_of_default, "score": result.score, "decision": None,
            "reasons": reasons, "logit": result.logit, "notes": {"unknown_at": result.missing_at}}


@score_app.command()
def score(
    applicants: list[str] | None = typer.Argument(None, help="Vertical demo: registration number(s) to score."),
    model: str | None = typer.Option(None, "--model", help="A registered horizontal model, NAME or NAME@VERSION; "
                                        "with --run (vertical): lr, scorecard or gbdt (default lr)."),
    data: Path | None = typer.Option(None, "--data", help="Applicants file (CSV or Parquet, no label needed)."),
    out: Path | None = typer.Option(None, "--out", help="Write results to .csv, .json or .jsonl (default: a table)."),
    run_id: str | None = typer.Option(None, "--run", help="The vertical run whose model scores (default: newest)."),
    id_column: str | None = typer.Option(None, "--id-column", help="Applicant id column (default: the training "
                                            "run's id column, else row numbers)."),
    reasons: int = typer.Option(4, "--reasons", min=1, max=20, help="Reason codes per applicant."),
    chunk_rows: int = typer.Option(5000, "--chunk-rows", min=1, help="Rows read and scored at a time."),
    store: str | None = StoreOption,
) -> None:
    """Score loan applications: new applicants from a file, or vertical demo ids; only the bank sees the result.

    Horizontal models score at the bank. A vertical model scores jointly: each partner computes its part from its
    own current table, the parts are summed under masks, and the bank alone sees the PD and reasons.
    """
    from sampan.errors import ConfigError

    with treat_as_usage(ValueError):
        if data is None:
            if not applicants:
                raise ConfigError("give --data FILE (applicants to score) or applicant ids (vertical demo runs)")
            _legacy(applicants, run_id, model or "lr", store)
            return
        if applicants:
            raise ConfigError("give either --data FILE or applicant ids, not both")
        run_store = _store(store)
        started = time.perf_counter()
        if model is None and run_id is None:
            raise ConfigError("--data: name the model, --model NAME[@VERSION] (or --run RUN_ID for a vertical model)")
        if run_id is not None or (model in _VERTICAL_KINDS and not _registered(run_store, str(model))):
            kind = model or "lr"
            if kind not in _VERTICAL_KINDS:
                raise ConfigError(f"--run: --model must be lr, scorecard or gbdt, got {kind!r}")
            chunks = _vertical(run_store, run_id or _newest_vertical(run_store), kind, data, id_column, chunk_rows)
        else:
            assert model is not None
            chunks = _horizontal(run_store, model, data, id_column, reasons, chunk_rows)
        n, shown = _emit(chunks, out, reasons)
    where = f" to [bold]{out}[/]" if out else ""
    console.print(f"{n} applicant(s) scored{where} in {time.perf_counter() - started:.2f} s.")
    if shown:
        console.print(shown)


def _emit(chunks: Iterator[list[dict[str, Any]]], out: Path | None, reasons: int) -> tuple[int, Any]:
    """Write every chunk to ``out``, or keep the first rows for a table on screen."""
    if out is not None:
        with ScoreWriter(out, reasons) as writer:
            for rows in chunks:
                writer.write(rows)
        return writer.count, None
    from rich.table import Table

    table = Table(title="Scores (first 20; --out FILE writes them all)")
    for col in ("id", "PD", "score", "decision", "top reasons"):
        table.add_column(col, justify="right" if col in ("PD", "score") else "left")
    n = 0
    for rows in chunks:
        for r in rows:
            if n < 20:
                table.add_row(r["id"], f"{r['pd']:.4f}", f"{r['score']:.0f}", r["decision"] or "-",
                              ", ".join(x["feature"] for x in r["reasons"][:3]))
            n += 1
    return n, table


def _registered(run_store: Store, ref: str) -> bool:
    """Whether a registered model answers to ``ref`` (a model named like a vertical kind wins over the kind)."""
    from sampan.errors import StoreError
    from sampan.runtime.scorers import parse_model_ref

    try:
        run_store.get_model(*parse_model_ref(ref))
    except StoreError:
        return False
    return True


def _newest_vertical(run_store: Store) -> str:
    from sampan.errors import StoreError

    vertical_runs = [r for r in run_store.list_runs(200) if r.workflow == "vertical" and r.status == "completed"]
    if not vertical_runs:
        raise StoreError("no completed vertical run in the store; run `sampan demo --vertical` first")
    return vertical_runs[0].run_id


def _legacy(applicants: list[str], run_id: str | None, model: str, store: str | None) -> None:
    """`sampan score APPLICANT...`: joint scoring of ids the bank already holds (vertical demo runs)."""
    from sampan.cli.vertical import results_table, score_applicants
    from sampan.errors import ConfigError

    run_store = _store(store)
    run_id = run_id or _newest_vertical(run_store)
    started = time.perf_counter()
    if model not in _VERTICAL_KINDS:
        raise ConfigError(f"--model must be lr, scorecard or gbdt, got {model!r}")
    results = score_applicants(run_store, run_id, list(applicants), model)
    console.print(results_table(results, f"Joint score (run {run_id}), as the bank sees it"))
    console.print(f"{len(results)} application(s) in {time.perf_counter() - started:.2f} s including setup; "
                  f"joint scoring itself {max(r.seconds for r in results) * 1000:.1f} ms.")
