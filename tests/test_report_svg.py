"""Hand-written SVG charts: valid XML, escaped text, graceful on empty or degenerate data."""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET

import pytest

from sampan.report.svg import bar_chart, calibration_chart, line_chart, roc_chart

NS = "{http://www.w3.org/2000/svg}"


def parse(svg: str) -> ET.Element:
    root = ET.fromstring(svg)
    assert root.tag == f"{NS}svg"
    assert re.fullmatch(r"0 0 \d+ \d+", root.attrib["viewBox"])
    return root


def texts(root: ET.Element) -> list[str]:
    return ["".join(el.itertext()) for el in root.iter(f"{NS}text")]


def polyline_points(root: ET.Element) -> list[int]:
    return [len(el.attrib["points"].split()) for el in root.iter(f"{NS}polyline")]


def test_line_chart_basics() -> None:
    root = parse(line_chart({"Bank A": [(1, 0.7), (2, 0.75), (3, 0.8)], "Bank B": [(1, 0.6), (2, 0.65)]},
                            title="AUC per round", x_label="Round", y_label="AUC"))
    words = texts(root)
    assert "AUC per round" in words and "Round" in words and "AUC" in words
    assert "Bank A" in words and "Bank B" in words
    assert sorted(polyline_points(root)) == [2, 3]
    colours = {el.attrib["stroke"] for el in root.iter(f"{NS}polyline")}
    assert len(colours) == 2  # distinct series colours


def test_text_is_escaped() -> None:
    evil = '<script>alert("x")</script> & co'
    svg = line_chart({evil: [(0, 1), (1, 2)]}, title=evil, x_label=evil, y_label=evil)
    assert "<script>" not in svg
    root = parse(svg)
    assert evil in texts(root)
    for chart in (
        roc_chart({evil: ([0, 1], [0, 1])}, title=evil),
        bar_chart({evil: 3.0}, title=evil, y_label=evil, series_labels=[evil]),
        calibration_chart([0.2], [0.3], [5], title=evil),
    ):
        assert "<script>" not in chart
        assert evil in texts(parse(chart))


@pytest.mark.parametrize(
    "make",
    [
        lambda: line_chart({}, title="t", x_label="x", y_label="y"),
        lambda: line_chart({"a": []}, title="t", x_label="x", y_label="y"),
        lambda: line_chart({"a": [(math.nan, 1.0), (1.0, math.inf)]}, title="t", x_label="x", y_label="y"),
        lambda: roc_chart({}),
        lambda: roc_chart({"m": ([], [])}),
        lambda: bar_chart({}, title="t", y_label="y"),
        lambda: bar_chart({"a": [math.nan]}, title="t", y_label="y"),
        lambda: calibration_chart([], [], [], title="t"),
    ],
)
def test_empty_input_renders_no_data_note(make) -> None:  # type: ignore[no-untyped-def]
    root = parse(make())
    assert "No data" in texts(root)


def test_one_point_and_constant_series() -> None:
    one = parse(line_chart({"a": [(3, 0.5)]}, title="t", x_label="x", y_label="y"))
    assert polyline_points(one) == []
    assert len(list(one.iter(f"{NS}circle"))) == 1
    flat = parse(line_chart({"a": [(1, 2.0), (2, 2.0), (3, 2.0)]}, title="t", x_label="x", y_label="y"))
    assert polyline_points(flat) == [3]
    ys = {float(p.split(",")[1]) for p in next(flat.iter(f"{NS}polyline")).attrib["points"].split()}
    assert len(ys) == 1
    zero = parse(line_chart({"a": [(0, 0.0), (0, 0.0)]}, title="t", x_label="x", y_label="y"))
    assert all(math.isfinite(float(c.attrib["cx"])) for c in zero.iter(f"{NS}circle"))
    parse(bar_chart({"a": 0.0, "b": 0.0}, title="t", y_label="y"))
    parse(calibration_chart([0.5], [0.5], [0], title="t"))


def test_nan_points_are_skipped() -> None:
    root = parse(line_chart({"a": [(1, 0.5), (2, math.nan), (3, 0.7)]}, title="t", x_label="x", y_label="y"))
    assert polyline_points(root) == [2]


def test_long_curves_are_downsampled() -> None:
    n = 10_000
    fpr = [i / (n - 1) for i in range(n)]
    tpr = [math.sqrt(f) for f in fpr]
    svg = roc_chart({"model": (fpr, tpr)}, aucs={"model": 2 / 3})
    root = parse(svg)
    assert polyline_points(root) == [500]
    assert len(svg) < 20_000
    points = next(root.iter(f"{NS}polyline")).attrib["points"].split()
    assert points[0] != points[-1]  # both ends kept
    series = {f"s{i}": [(x, x * i) for x in range(2000)] for i in range(3)}
    assert polyline_points(parse(line_chart(series, title="t", x_label="x", y_label="y"))) == [500] * 3


def test_roc_chart_legend_and_diagonal() -> None:
    root = parse(roc_chart({"Federated": ([0, 0.2, 1], [0, 0.7, 1]), "Pooled": ([0, 1], [0, 1])},
                           aucs={"Federated": 0.8123}))
    words = texts(root)
    assert "Federated (AUC 0.812)" in words
    assert "Pooled" in words and "Chance" in words
    dashed = [el for el in root.iter(f"{NS}line") if el.attrib.get("stroke-dasharray")]
    assert dashed  # the chance diagonal
    with pytest.raises(ValueError, match="different lengths"):
        roc_chart({"m": ([0, 1], [0])})


def test_bar_chart_grouped() -> None:
    root = parse(bar_chart({"Bank A": [800, 200], "PSP B": [300, 75], "Platform C": [50, 12]},
                           title="Rows per party", y_label="Rows", series_labels=["Train", "Test"]))
    bars = [el for el in root.iter(f"{NS}rect") if el.find(f"{NS}title") is not None]
    assert len(bars) == 6
    assert {el.attrib["fill"] for el in bars} == {"#0072B2", "#E69F00"}
    words = texts(root)
    for word in ("Train", "Test", "Bank A", "PSP B", "Platform C", "800"):
        assert word in words
    single = parse(bar_chart({"a": 1.5, "b": -2.0}, title="t", y_label="y"))
    assert len([el for el in single.iter(f"{NS}rect") if el.find(f"{NS}title") is not None]) == 2


def test_calibration_chart() -> None:
    root = parse(calibration_chart([0.05, 0.15, 0.5], [0.04, 0.2, 0.45], [900, 80, 20], title="Calibration"))
    assert len(list(root.iter(f"{NS}circle"))) == 3
    assert "Perfectly calibrated" in texts(root)
    with pytest.raises(ValueError, match="same length"):
        calibration_chart([0.1], [0.2, 0.3], [1], title="t")


def test_clip_ids_differ_between_charts() -> None:
    a = line_chart({"a": [(0, 1), (1, 2)]}, title="A", x_label="x", y_label="y")
    b = line_chart({"a": [(0, 1), (1, 3)]}, title="B", x_label="x", y_label="y")
    id_a = re.search(r'clipPath id="([^"]+)"', a)
    id_b = re.search(r'clipPath id="([^"]+)"', b)
    assert id_a and id_b and id_a.group(1) != id_b.group(1)


def test_no_external_references() -> None:
    svg = line_chart({"a": [(0, 1), (1, 2)]}, title="t", x_label="x", y_label="y")
    assert "http" not in svg.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "<script" not in svg
