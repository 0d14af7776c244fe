"""The procedural 'real' documents: shapes, determinism by seed, fixed layout, clear errors (issue 18)."""

from __future__ import annotations

import numpy as np
import pytest

from sampan.errors import ConfigError, SampanError
from sampan.fraud.documents import (
    KINDS,
    DocImage,
    FraudDataError,
    check_source,
    photo_box,
    render_document,
    text_boxes,
)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("size", [(128, 128), (96, 128)])
def test_render_shape_and_dtype(kind: str, size: tuple[int, int]) -> None:
    img = render_document(kind, np.random.default_rng(1), size)
    assert img.shape == (*size, 3)
    assert img.dtype == np.uint8
    assert 10 < img.std() < 120  # neither blank nor noise


@pytest.mark.parametrize("kind", KINDS)
def test_same_seed_same_document_other_seed_other_document(kind: str) -> None:
    a = render_document(kind, np.random.default_rng(7), (128, 128))
    b = render_document(kind, np.random.default_rng(7), (128, 128))
    c = render_document(kind, np.random.default_rng(8), (128, 128))
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("kind", KINDS)
def test_layout_boxes_lie_inside_and_carry_content(kind: str) -> None:
    size = (128, 128)
    img = render_document(kind, np.random.default_rng(3), size)
    for y0, x0, y1, x1 in [photo_box(kind, size), *text_boxes(kind, size)]:
        assert 0 <= y0 < y1 <= size[0] and 0 <= x0 < x1 <= size[1]
    y0, x0, y1, x1 = photo_box(kind, size)
    assert img[y0:y1, x0:x1].std() > 15  # a face or a seal, not an empty box
    assert len(text_boxes(kind, size)) >= 4


def test_photo_box_scales_with_size() -> None:
    small, big = photo_box("id_card", (128, 128)), photo_box("id_card", (256, 256))
    assert all(abs(2 * s - b) <= 1 for s, b in zip(small, big, strict=True))


def test_unknown_kind_is_a_config_error_naming_the_field() -> None:
    with pytest.raises(FraudDataError, match="'kind'") as err:
        render_document("passport", np.random.default_rng(0))
    assert isinstance(err.value, ConfigError) and isinstance(err.value, SampanError)
    assert "passport" in str(err.value) and "id_card" in str(err.value)
    with pytest.raises(FraudDataError, match="'kind'"):
        photo_box("passport")


def test_unknown_source_and_tiny_size_are_refused() -> None:
    with pytest.raises(FraudDataError, match="'source'"):
        check_source("gan")
    with pytest.raises(FraudDataError, match="'size'"):
        render_document("id_card", np.random.default_rng(0), (16, 16))


def test_docimage_is_frozen() -> None:
    doc = DocImage(np.zeros((4, 4, 3), np.uint8), 0, "real", "id_card", np.zeros((4, 4), bool), "none", "x")
    with pytest.raises(AttributeError):
        doc.label = 1  # type: ignore[misc]
