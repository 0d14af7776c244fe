"""Verification reports from a synthetic Evaluation: JSON round trip, HTML (escaping, well-formed), JUnit counts,
PDF, the comparison view, and the all-files bundle (atomic, never over someone else's folder)."""

from __future__ import annotations

import importlib.util
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from _report_fixtures import HOSTILE, synthetic

from sampan.errors import ConfigError
from sampan.verify.report import render_comparison, render_html, render_junit, write_all
from sampan.verify.report._common import claims_table
from sampan.verify.report.compare import changes
from sampan.verify.results import SCHEMA, Evaluation, load_evaluation, save_evaluation


def test_json_round_trip_is_stable(tmp_path: Path) -> None:
    ev = synthetic()
    path = save_evaluation(ev, tmp_path / "results.json")
    data = json.loads(path.read_text())
    assert data["schema"] == SCHEMA
    assert data["outcomes"][1]["figures"]["nan_figure"] is None
    again = load_evaluation(path)
    assert again.to_json() == ev.to_json()
    assert again.counts() == {"pass": 3, "fail": 1, "skip": 1, "error": 1}


@pytest.mark.parametrize(("mutate", "field"), [
    (lambda d: d.update(schema="other.v9"), "schema"),
    (lambda d: d["outcomes"][0].update(verdict="maybe"), "outcomes[0].verdict"),
    (lambda d: d["outcomes"][1]["figures"].update(auc="high"), "outcomes[1].figures.auc"),
    (lambda d: d["target"].pop("url"), "target.url"),
    (lambda d: d["outcomes"][1]["plots"][0].update(kind="pie"), "outcomes[1].plots[0].kind"),
])
def test_bad_results_name_the_field(mutate, field: str) -> None:
    data = synthetic().to_dict()
    mutate(data)
    with pytest.raises(ConfigError, match=field.replace("[", r"\[").replace("]", r"\]")):
        Evaluation.from_json(json.dumps(data))


def test_load_missing_or_not_json(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_evaluation(tmp_path / "nope.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ConfigError, match="bad.json: not JSON"):
        load_evaluation(tmp_path / "bad.json")


def test_html_has_summary_sections_plots_and_escapes_hostile_strings() -> None:
    html = render_html(synthetic())
    ET.fromstring(html.split("\n", 1)[1])  # well-formed XML: nothing injected broke the structure
    assert "<script" not in html and "alert(&quot;x&quot;)" in html
    assert "\x00" not in html and "\x1b" not in html
    for text in ("Claims vs measured", "Functional tests", "Performance tests", "Security tests", "Manifest",
                 "pooled baseline", "auc &gt;= pooled - margin", "AUC per round", "MIA ROC", "Bytes per party",
                 "contradicted", "F-API-VERSION", "1 min 30 s", "rounds of the job", "3 IID parties",
                 "within the margin of pooled training"):
        assert text in html, text
    assert html.count("<svg") == 3
    for verdict in ("pass", "fail", "skip", "error"):
        assert 'class="badge' in html and f">{verdict}</span>" in html


def test_claims_table_reads_verdicts() -> None:
    rows = {r.claim: r for r in claims_table(synthetic())}
    assert rows["secure_aggregation"].measured == "contradicted"
    assert rows["dp"].measured == "not tested" and "ε = 1" in rows["dp"].claimed
    assert rows["mtls"].measured == "inconclusive" and rows["mtls"].claimed == "no"
    assert rows["psi"].measured == "not tested"
    ok = synthetic(verdicts={"S-SECAGG-MASKED": "pass"})
    assert {r.claim: r for r in claims_table(ok)}["secure_aggregation"].measured == "confirmed"


def test_junit_parses_and_counts_match() -> None:
    root = ET.fromstring(render_junit(synthetic()).encode())
    assert root.tag == "testsuites"
    assert (root.get("tests"), root.get("failures"), root.get("errors"), root.get("skipped")) == ("6", "1", "1", "1")
    suites = {s.get("name"): s for s in root.findall("testsuite")}
    assert list(suites) == ["functional", "performance", "security"]
    sec = suites["security"]
    assert (sec.get("tests"), sec.get("failures"), sec.get("errors"), sec.get("skipped")) == ("3", "1", "1", "1")
    cases = {c.get("name").split()[0]: c for s in suites.values() for c in s.findall("testcase")}
    assert cases["S-SECAGG-MASKED"].find("failure") is not None
    assert cases["S-TLS-WRONG-CA"].find("error") is not None
    assert cases["S-MIA"].find("skipped") is not None
    assert cases["F-API-VERSION"].find("failure") is None and cases["F-API-VERSION"].find("skipped") is None
    out = cases["F-AUC-HORIZONTAL"].findtext("system-out") or ""
    assert "pooled baseline" in out and "rounds of the job (10 rounds; source: task spec)" in out
    assert "pass rule: final AUC" in out


def test_pdf_renders() -> None:
    pytest.importorskip("reportlab")
    from sampan.verify.report.pdf import render_pdf

    data = render_pdf(synthetic())
    assert data.startswith(b"%PDF") and len(data) > 3000


def test_compare_marks_changed_verdicts() -> None:
    a = synthetic("weak")
    b = synthetic("sampan", verdicts={"S-SECAGG-MASKED": "pass", "S-MIA": "pass"}, auc=0.76)
    b.outcomes.append(b.outcomes[0].__class__("F-NEW", "new test", "functional", "pass"))
    status = {test_id: s for test_id, _, _, s in changes(a, b)}
    assert status["S-SECAGG-MASKED"] == "changed" and status["S-MIA"] == "changed"
    assert status["F-AUC-HORIZONTAL"] == "figures" and status["F-API-VERSION"] == "same"
    assert status["F-NEW"] == "only in B"
    html = render_comparison(a, b)
    ET.fromstring(html.split("\n", 1)[1])
    assert "2 verdict(s) changed" in html
    assert html.count('<tr class="changed">') == 3
    assert "0.74 → 0.76" in html and "<script" not in html


def test_write_all_writes_every_file_and_refuses_foreign_folder(tmp_path: Path) -> None:
    out = tmp_path / "report"
    written = write_all(synthetic(), out, pdf=False)
    assert {p.name for p in written} == {"results.json", "manifest.json", "report.html", "junit.xml"}
    assert json.loads((out / "manifest.json").read_text())["seed"] == 42
    write_all(synthetic("sampan"), out, pdf=False)  # an earlier report is replaced
    assert load_evaluation(out / "results.json").target.platform == "sampan"
    (out / "mine.txt").write_text("someone else's")
    with pytest.raises(ConfigError, match="other files"):
        write_all(synthetic(), out, pdf=False)
    assert (out / "mine.txt").exists() and load_evaluation(out / "results.json").target.platform == "sampan"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging folder left


def test_empty_evaluation_renders() -> None:
    ev = Evaluation.from_dict({"schema": SCHEMA, "target": {"url": "http://x"}, "profile": "quick"})
    assert "No test ran." in render_html(ev)
    assert ET.fromstring(render_junit(ev).encode()).get("tests") == "0"
    assert HOSTILE not in render_html(ev)


def test_hostile_platform_name_and_claims_are_escaped_everywhere() -> None:
    from dataclasses import replace

    ev = synthetic(HOSTILE)
    ev = replace(ev, target=replace(ev.target, url=HOSTILE, platform_version=HOSTILE,
                                    claims={HOSTILE: HOSTILE, "dp": {"epsilon": HOSTILE}}), profile=HOSTILE)
    for html in (render_html(ev), render_comparison(ev, synthetic())):
        ET.fromstring(html.split("\n", 1)[1])
        assert "<script" not in html and "\x00" not in html
    root = ET.fromstring(render_junit(ev).encode())
    assert root.get("tests") == "6"
    if importlib.util.find_spec("reportlab") is not None:
        from sampan.verify.report.pdf import render_pdf

        assert render_pdf(ev).startswith(b"%PDF")


def test_degenerate_plots_render_in_html_and_pdf() -> None:
    from dataclasses import replace

    from sampan.verify.results import Plot

    plots = [Plot("line", "one point", {"a": [(1, 0.5)]}), Plot("line", "constant", {"a": [(1, 2.0), (2, 2.0)]}),
             Plot("bar", "negative", {"a": [(0, -5.0)], "b": [(0, 3.0)]}), Plot("roc", "empty", {}),
             Plot("line", "nan", {"a": [(float("nan"), 1.0)]}), Plot("line", "huge", {"a": [(1, 1e300), (2, -1e300)]}),
             Plot("line", "many", {f"s{i}": [(j, j * i) for j in range(600)] for i in range(9)})]
    ev = synthetic()
    ev.outcomes[0] = replace(ev.outcomes[0], plots=plots)
    html = render_html(ev)
    ET.fromstring(html.split("\n", 1)[1])
    assert html.count("<svg") == 3 + len(plots)
    if importlib.util.find_spec("reportlab") is not None:
        from sampan.verify.report.pdf import render_pdf

        assert render_pdf(ev).startswith(b"%PDF")
