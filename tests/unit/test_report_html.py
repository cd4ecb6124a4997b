"""The HTML report and the thumbnails: self-contained, escaped, with the plots and the samples."""

from __future__ import annotations

import base64
import io
import re

import numpy as np
import pytest
from PIL import Image

from shardwise.data.table import SampleTable
from shardwise.diagnosis.compare import compare
from shardwise.diagnosis.diagnose import diagnose
from shardwise.diagnosis.html import render_html
from shardwise.diagnosis.predictions import Predictions
from shardwise.diagnosis.thumbnails import is_image_row, thumbnail_png

PNG = b"\x89PNG\r\n\x1a\n"
DATA_URI = re.compile(r"data:image/png;base64,([A-Za-z0-9+/=]+)")


def sample_run(classes: tuple[str, ...], seed: int, image: bool = True, n: int = 80, shards: int = 3,
               boost: float = 3.0):
    """Predictions that are right on most samples (the more, the larger `boost`), a SampleTable to match, and the
    report."""
    rng = np.random.default_rng(seed)
    c = len(classes)
    ids = np.array([f"s{i:03d}" for i in range(n)])
    labels = np.arange(n) % c
    train = np.arange(n) % 3 != 0
    shard = np.where(train, np.arange(n) % shards, -1).astype(np.int32)
    logits = rng.normal(size=(shards, n, c))
    logits[:, np.arange(n), labels] += boost
    probs = (np.exp(logits) / np.exp(logits).sum(2, keepdims=True)).astype(np.float32)
    preds = Predictions(ids, labels, train, shard, np.where(train, 0, -1).astype(np.int32), probs, classes)
    feats = rng.random((n, 1, 8, 8)) if image else rng.random((n, 7))
    table = SampleTable(ids, labels, feats.astype(np.float32), np.array([""] * n), classes)
    report = {"experiment": f"exp-{seed}", "model": "m", "version": seed + 1, "dataset": "d",
              "datasetRevision": seed + 1, "split": "test", **diagnose(preds, "test"),
              "predictionsKey": "default/experiments/x/predictions.npz", "comparison": None}
    return report, preds, table


def shown(delta: float) -> str:
    """A delta as the page writes it: signed, 4 decimals, ±0.0000 when it rounds to nothing."""
    return "±0.0000" if abs(delta) < 5e-5 else f"{delta:+.4f}"


def pngs(page: str) -> list[bytes]:
    return [base64.b64decode(m) for m in DATA_URI.findall(page)]


def without_data_uris(page: str) -> str:
    return DATA_URI.sub("data:", page)


def test_the_page_is_self_contained_with_plots_thumbnails_and_every_class():
    classes = tuple(str(i) for i in range(10))
    report, preds, table = sample_run(classes, 0)
    page = render_html(report, preds, table, None)
    text = without_data_uris(page)
    assert not re.search(r"https?://", text, re.IGNORECASE) \
        and "<script" not in text.lower() and "<link" not in text.lower()
    assert set(re.findall(r'src="([^":]*):', page)) == {"data"}  # every src is a data: URI
    images = pngs(page)
    assert all(p.startswith(PNG) for p in images)
    sizes = {Image.open(io.BytesIO(p)).size for p in images}
    assert (48, 48) in sizes  # the 8x8 digits, upscaled
    assert len([s for s in sizes if s[0] > 200]) >= 3  # confusion, reliability, per-class F1, per-shard plots
    per_class = page.split("<h2>Per class</h2>")[1].split("</table>")[0]
    assert all(f"<td>{c}</td>" in per_class for c in classes)
    assert len(report["hardest"]) > 0 and all(f"<td>{r['id']}</td>" in page for r in report["hardest"])
    assert "Compared with" not in page


def test_user_text_is_escaped_everywhere():
    classes = ("<script>alert(1)</script>", "a&b", 'q"uote', "$x$")
    report, preds, table = sample_run(classes, 1, n=24)
    report["experiment"] = "<img src=x onerror=alert(1)>"
    page = render_html(report, preds, table, None)
    assert "<script>" not in page and "<img src=x" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "a&amp;b" in page and "q&quot;uote" in page


def test_tabular_samples_show_their_first_values():
    report, preds, table = sample_run(("no", "yes"), 2, image=False, n=30)
    page = render_html(report, preds, table, None)
    sid = report["hardest"][0]["id"]
    row = table.features[list(table.ids).index(sid)]
    assert ", ".join(f"{v:.3g}" for v in row[:6]) + ", … (7 values)" in page
    assert all(Image.open(io.BytesIO(p)).size != (48, 48) for p in pngs(page))  # plots only, no thumbnails


def test_the_comparison_section_shows_signed_deltas_and_the_flipped_samples():
    classes = tuple(str(i) for i in range(10))
    base, base_preds, table = sample_run(classes, 3, boost=1.0)
    cur, cur_preds, _ = sample_run(classes, 4, boost=1.0)
    comparison = compare(cur, base, cur_preds, base_preds)
    assert comparison["rightToWrong"] or comparison["wrongToRight"]
    page = render_html(cur, cur_preds, table, comparison)
    section = page.split("<h2>Compared with exp-3 (version 4)</h2>")[1]
    d = comparison["deltas"]["accuracy"]
    assert shown(d) in section
    for r in comparison["rightToWrong"] + comparison["wrongToRight"]:
        assert f"<td>{r['id']}</td>" in section
    assert f"right → wrong: {len(comparison['rightToWrong'])}" in section
    assert "baseline F1" in page and "ΔF1" in page


def test_a_report_without_a_diagnosis_still_renders():
    page = render_html({"experiment": "old", "version": 1, "split": "test", "samples": 0, "accuracy": None})
    assert "Experiment old" in page and "n/a" in page and "data:image" not in page


def test_thumbnails_upscale_each_pixel_to_a_block():
    row = np.zeros((1, 8, 8), dtype=np.float32)
    row[0, 2, 5] = 1.0
    img = np.asarray(Image.open(io.BytesIO(thumbnail_png(row, 48))))
    assert img.shape == (48, 48)
    assert (img[12:18, 30:36] == 255).all() and img.sum() == 36 * 255  # one white 6x6 block, nothing blurred


def test_thumbnails_keep_colour_and_aspect_and_refuse_a_vector():
    rgb = np.zeros((3, 4, 8), dtype=np.float32)
    rgb[0] = 1.0  # red
    img = Image.open(io.BytesIO(thumbnail_png(rgb, 48)))
    assert img.mode == "RGB" and img.size == (48, 24) and img.getpixel((0, 0)) == (255, 0, 0)
    assert is_image_row(rgb) and not is_image_row(np.zeros(64))
    with pytest.raises(ValueError, match="expected one image sample"):
        thumbnail_png(np.zeros(64))


def test_a_one_shard_model_is_told_its_label_issues_are_in_sample():
    classes = tuple(str(i) for i in range(4))
    one, _, table = sample_run(classes, 2, shards=1)
    three, _, _ = sample_run(classes, 2, shards=3)
    assert (one["labelIssues"]["outOfShard"], three["labelIssues"]["outOfShard"]) == (False, True)
    warning = "no model is out-of-shard for a training sample"
    assert warning in render_html(one, None, table, None) and warning not in render_html(three, None, table, None)
