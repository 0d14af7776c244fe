"""An evaluation as JUnit XML, so a CI system shows each catalogue test as a test case.

The common (Ant/Jenkins/GitLab) dialect: `<testsuites>` with one `<testsuite>` per category, a `<testcase>`
per test; a failed test carries `<failure>`, an errored one `<error>`, a skipped one `<skipped>`. Built with
xml.etree (which escapes), after removing characters XML forbids.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from sampan.verify.report._common import clean, fmt_number, fmt_threshold, threshold_rows
from sampan.verify.results import Evaluation, Outcome

__all__ = ["render_junit"]


def _details(o: Outcome) -> str:
    lines = [f"{o.id}: {o.verdict}"]
    if o.message:
        lines.append(o.message)
    if o.pass_rule:
        lines.append(f"pass rule: {o.pass_rule}")
    for th in threshold_rows(o):
        lines.append(f"threshold: {th.rule} ({fmt_threshold(th)}; source: {th.source or 'n/a'})")
    lines += [f"{k} = {fmt_number(v)}" for k, v in o.figures.items()]
    return clean("\n".join(lines))


def _case(suite: ET.Element, o: Outcome, category: str) -> None:
    case = ET.SubElement(suite, "testcase", {"classname": clean(f"sampan.verify.{category}"),
                                             "name": clean(f"{o.id} {o.title}".strip()),
                                             "time": f"{max(o.seconds, 0.0):.3f}"})
    message = clean(o.message or o.verdict)
    if o.verdict == "fail":
        ET.SubElement(case, "failure", {"message": message, "type": "VerificationFailure"}).text = _details(o)
    elif o.verdict == "error":
        ET.SubElement(case, "error", {"message": message, "type": "VerificationError"}).text = _details(o)
    elif o.verdict == "skip":
        ET.SubElement(case, "skipped", {"message": message})
    ET.SubElement(case, "system-out").text = _details(o)


def render_junit(evaluation: Evaluation) -> str:
    """The XML document as a string (UTF-8 declaration included)."""
    t = evaluation.target
    name = clean(f"sampan verify {t.platform or t.url} ({evaluation.profile})")
    counts = evaluation.counts()
    root = ET.Element("testsuites", {
        "name": name, "tests": str(len(evaluation.outcomes)), "failures": str(counts["fail"]),
        "errors": str(counts["error"]), "skipped": str(counts["skip"]),
        "time": f"{sum(max(o.seconds, 0.0) for o in evaluation.outcomes):.3f}",
    })
    for category, outcomes in evaluation.by_category().items():
        suite = ET.SubElement(root, "testsuite", {
            "name": category, "tests": str(len(outcomes)),
            "failures": str(sum(o.verdict == "fail" for o in outcomes)),
            "errors": str(sum(o.verdict == "error" for o in outcomes)),
            "skipped": str(sum(o.verdict == "skip" for o in outcomes)),
            "time": f"{sum(max(o.seconds, 0.0) for o in outcomes):.3f}",
            "timestamp": clean(evaluation.started), "hostname": clean(t.url),
        })
        props = ET.SubElement(suite, "properties")
        for key, value in (("platform", t.platform), ("platform_version", t.platform_version),
                           ("api_version", t.api_version), ("profile", evaluation.profile)):
            ET.SubElement(props, "property", {"name": key, "value": clean(value)})
        for o in outcomes:
            _case(suite, o, category)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
