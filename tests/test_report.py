"""Run reports: one self-contained, well-formed, escaped HTML page, written atomically."""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

import sampan.report.html as report_html
from sampan.metrics import calibration_curve, roc_curve
from sampan.report import (
    PartySummary,
    ReportSection,
    RoundRecord,
    RunReport,
    render_run_report,
    write_report,
)

EVIL = "<script>alert(1)</script>"
SVG_NS = 'xmlns="http://www.w3.org/2000/svg"'
VOID = {"meta", "br", "hr", "img", "input", "link"}


def make_report(**overrides: object) -> RunReport:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 500)
    p = np.clip(0.35 * y + 0.65 * rng.random(500), 0, 1)
    fpr, tpr, _ = roc_curve(y, p)
    parties = [
        PartySummary("Harbour Bank", 4000, 1000, 0.071),
        PartySummary("PearlPay", 2500, 600, 0.09),
        PartySummary(EVIL, 300, 80, None),
    ]
    rounds = [
        RoundRecord(
            r,
            {"auc": 0.7 + 0.01 * r, "loss": 0.5 - 0.02 * r},
            {p.name: {"auc": 0.69 + 0.01 * r + 0.001 * i, "loss": 0.52 - 0.02 * r} for i, p in enumerate(parties)},
            1.5,
        )
        for r in range(1, 6)
    ]
    fields: dict[str, object] = dict(
        run_id="run-42",
        title="SME default model",
        status="completed",
        created_at="2024-06-01 10:00",
        config={"strategy": {"name": "fedavg", "rounds": 5}, "privacy": {"epsilon": 3.0}, "tags": ["a", "b"]},
        parties=parties,
        rounds=rounds,
        final_metrics={"auc": 0.81234, "ks": 0.4567, "pr_auc": 0.7, "brier": 0.15, "n": 500.0, "positive_rate": 0.5},
        roc=(fpr.tolist(), tpr.tolist()),
        calibration=calibration_curve(y, p),
        baselines={"Pooled": {"auc": 0.82, "ks": 0.47}, "Bank only": {"auc": 0.75}},
        notes=["Secure aggregation on.", f"note with {EVIL}"],
        sections=[ReportSection("Privacy receipt", '<p class="receipt">epsilon 2.9 of 4.0</p>')],
    )
    fields.update(overrides)
    return RunReport(**fields)  # type: ignore[arg-type]


class TagBalance(HTMLParser):
    """Fails on mismatched or unclosed tags, which html.parser alone would silently accept."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:  # type: ignore[type-arg]
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list) -> None:  # type: ignore[type-arg]
        pass

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"unexpected </{tag}> with open {self.stack[-3:]}")
        else:
            self.stack.pop()


def assert_well_formed(page: str) -> ET.Element:
    parser = TagBalance()
    parser.feed(page)
    parser.close()
    assert parser.errors == [] and parser.stack == []
    return ET.fromstring(page)  # the page is also well-formed XML


def test_page_is_well_formed_html_and_xml() -> None:
    root = assert_well_formed(render_run_report(make_report()))
    assert root.tag == "html"
    assert root.find("head/title") is not None


def test_page_is_self_contained() -> None:
    page = render_run_report(make_report())
    assert page.startswith("<!DOCTYPE html>")
    assert "<style>" in page
    assert "http://" not in page.replace(SVG_NS, "") and "https://" not in page
    assert not re.search(r"\b(src|href)\s*=", page)
    assert "<script" not in page and "<link" not in page and "@import" not in page
    assert "Content-Security-Policy" in page


def test_user_urls_are_text_not_resources() -> None:
    page = render_run_report(make_report(config={"coordinator": "https://coord.example:8443"}))
    assert not re.search(r"\b(src|href)\s*=", page)


def test_svgs_parse_as_xml() -> None:
    page = render_run_report(make_report())
    svgs = re.findall(r"<svg\b.*?</svg>", page, flags=re.S)
    assert len(svgs) == 5  # ROC, calibration, AUC per round, loss per round, rows per party
    for svg in svgs:
        assert ET.fromstring(svg).tag == "{http://www.w3.org/2000/svg}svg"


def test_contains_parties_metrics_and_content() -> None:
    page = render_run_report(make_report())
    for text in ("Harbour Bank", "PearlPay", "SME default model", "run-42", "2024-06-01 10:00",
                 "0.8123", "0.4567", "0.7000", "50.00%", "Pooled", "Bank only", "fedavg",
                 "strategy.rounds", "Secure aggregation on.", "AUC per round", "Loss per round",
                 "Federated model (AUC 0.812)", "4,000", "Privacy receipt"):
        assert text in page, text
    assert "0.8200" in page and "0.7500" in page  # baselines side by side


def test_everything_user_provided_is_escaped() -> None:
    report = make_report(
        run_id=EVIL, title=EVIL, status=EVIL, created_at=EVIL, notes=[EVIL],
        config={EVIL: EVIL}, baselines={EVIL: {EVIL: 1.0}},
        final_metrics={"auc": 0.8, EVIL: 0.5},
        sections=[ReportSection(EVIL, "<p>trusted</p>")],
    )
    page = render_run_report(report)
    assert "<script" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<p>trusted</p>" in page  # section bodies are inserted as-is, by contract
    assert_well_formed(page)


def test_minimal_report_and_empty_rounds_do_not_crash() -> None:
    page = render_run_report(RunReport(run_id="r0", title="Nothing yet", status="running"))
    assert_well_formed(page)
    assert "No training rounds were recorded." in page
    assert "No metrics were recorded" in page
    assert "No data" in page  # ROC and calibration placeholders
    page = render_run_report(make_report(rounds=[], roc=None, calibration=None))
    assert_well_formed(page)
    assert "Harbour Bank" in page


def test_partial_and_missing_round_metrics() -> None:
    rounds = [
        RoundRecord(1, {"auc": 0.7}, {"Harbour Bank": {"auc": 0.69}}, None),
        RoundRecord(2, {"auc": math.nan}, {"PearlPay": {"accuracy": 0.9}}, 2.0),
        RoundRecord(3, {}, {}, None),
    ]
    page = render_run_report(make_report(rounds=rounds))
    assert_well_formed(page)
    assert "Loss per round" not in page  # no loss recorded: no loss chart
    assert "AUC per round" in page


def test_party_named_like_the_global_series() -> None:
    rounds = [RoundRecord(1, {"auc": 0.7}, {"Global model": {"auc": 0.6}}), RoundRecord(2, {"auc": 0.8}, {})]
    page = render_run_report(make_report(rounds=rounds, parties=[PartySummary("Global model", 10, 5)]))
    assert "Global model (aggregate)" in page


def test_write_report_is_atomic_and_creates_parents(tmp_path: Path) -> None:
    target = tmp_path / "runs" / "run-42" / "report.html"
    written = write_report(make_report(), target)
    assert written == target
    assert target.read_text(encoding="utf-8") == render_run_report(make_report())
    assert sorted(p.name for p in target.parent.iterdir()) == ["report.html"]
    write_report(make_report(title="Second version"), str(target))  # overwrite in place
    assert "Second version" in target.read_text(encoding="utf-8")
    assert sorted(p.name for p in target.parent.iterdir()) == ["report.html"]


def test_failed_write_keeps_old_file_and_leaves_no_temp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "report.html"
    write_report(make_report(title="Old"), target)

    def broken_replace(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(report_html.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        write_report(make_report(title="New"), target)
    assert "Old" in target.read_text(encoding="utf-8")
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]


def test_render_failure_writes_nothing(tmp_path: Path) -> None:
    bad = make_report(parties=[PartySummary("x", "many", 1)])  # type: ignore[arg-type]
    with pytest.raises((TypeError, ValueError)):
        write_report(bad, tmp_path / "out" / "report.html")
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []
