"""The Experiment report as ONE self-contained HTML file: no external URLs, no scripts.

Plots are PNGs drawn with matplotlib's Agg canvas (no pyplot: no global figure state, no GUI
backend) and sample thumbnails are PNGs too, all embedded as data: URIs, so the file can be
mailed, attached to a ticket or opened offline. Every string that comes from a user (class
names, sample ids, resource names) goes through html.escape.
"""

from __future__ import annotations

import io
import math
from html import escape
from typing import Any

import numpy as np

from shardwise.data.table import SampleTable
from shardwise.diagnosis.predictions import Predictions
from shardwise.diagnosis.thumbnails import is_image_row, png_data_uri, thumbnail_png

THUMB_PX = 48
FEATURES_SHOWN = 6  # values shown for a tabular sample
LABEL_ISSUES_SHOWN = 100  # of up to 500 in the report; the rest are in the JSON
FLIPS_SHOWN = 100
ANNOTATE_CELLS_UP_TO = 20  # classes: beyond this the confusion counts would not be legible
TICKS_UP_TO = 40

CSS = """
body{font:14px/1.4 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0 auto;max-width:1200px;padding:16px;
color:#1d1d1f;background:#fff}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ddd;padding-bottom:4px}
.sub{color:#555;margin-bottom:12px}.note{color:#666;font-size:12px;margin:4px 0}
.cards{display:flex;flex-wrap:wrap;gap:10px}\
.card{border:1px solid #ddd;border-radius:6px;padding:8px 12px;min-width:130px}
.card .k{color:#666;font-size:12px}.card .v{font-size:20px;font-weight:600}
.plots{display:flex;flex-wrap:wrap;gap:14px;align-items:flex-start}.plots figure{margin:0}
.plots figcaption{font-size:12px;color:#555;text-align:center}
table{border-collapse:collapse;font-size:13px}th,td{padding:3px 8px;border-bottom:1px solid #eee;text-align:left;
vertical-align:middle}th{background:#f6f6f6;position:sticky;top:0}td.n{text-align:right;font-variant-numeric:tabular-nums}
.up{color:#1a7f37}.down{color:#c62828}.flat{color:#666}img.t{display:block;image-rendering:pixelated}
code{font-size:12px;color:#333}.wrap{max-height:520px;overflow:auto;display:inline-block}
.cols{display:flex;flex-wrap:wrap;gap:24px;align-items:flex-start}
"""


# -- formatting ------------------------------------------------------------------------------
def _esc(x: Any) -> str:
    return escape("" if x is None else str(x), quote=True)


def _num(x: Any, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{float(x):.{digits}f}"


def _signed(delta: float | None, better_when: str = "higher") -> str:
    """A delta with its sign, coloured by whether it is an improvement."""
    if delta is None:
        return '<span class="flat">n/a</span>'
    if abs(delta) < 5e-5:
        return '<span class="flat">±0.0000</span>'
    good = delta > 0 if better_when == "higher" else delta < 0
    return f'<span class="{"up" if good else "down"}">{delta:+.4f}</span>'


def _mpl(text: Any, limit: int = 18) -> str:
    """User text for a matplotlib label: '$' would start mathtext, and long names crowd the axes."""
    s = str(text)
    s = s if len(s) <= limit else s[: limit - 1] + "…"
    return s.replace("$", r"\$")


# -- plots -----------------------------------------------------------------------------------
def _figure(w: float, h: float):
    try:
        from matplotlib.figure import Figure
    except ImportError:  # an install without the report (or trainer) extra, e.g. the operator image
        from shardwise.errors import InvalidInput

        raise InvalidInput("the report draws its plots with matplotlib, which is not installed here: "
                           "pip install 'shardwise[report]'") from None

    return Figure(figsize=(w, h), dpi=100, layout="constrained")


def _png(fig) -> bytes:
    buf = io.BytesIO()
    # no Software tag: the page should carry no URL, not even inside an image's metadata
    fig.savefig(buf, format="png", metadata={"Software": None})
    return buf.getvalue()


def plot_confusion(confusion: list[list[int]], names: list[str]) -> bytes:
    """Counts, coloured by the fraction of each given label's row (so rare classes show too)."""
    conf = np.asarray(confusion, dtype=np.int64).reshape(len(names), len(names))
    c = len(names)
    side = min(9.0, max(3.6, 0.26 * c + 1.6))
    fig = _figure(side + 0.8, side)
    ax = fig.add_subplot()
    rows = conf.sum(axis=1, keepdims=True)
    frac = np.divide(conf, rows, out=np.zeros(conf.shape), where=rows > 0)
    im = ax.imshow(frac, cmap="Blues", vmin=0, vmax=1, interpolation="nearest")
    if c <= ANNOTATE_CELLS_UP_TO:
        for i, j in zip(*np.nonzero(conf)):
            ax.text(j, i, str(conf[i, j]), ha="center", va="center", fontsize=7 if c > 12 else 8,
                    color="white" if frac[i, j] > 0.5 else "black")
    if c <= TICKS_UP_TO:
        labels = [_mpl(n, 10) for n in names]
        ax.set_xticks(range(c), labels, rotation=90 if c > 10 or max(map(len, labels), default=0) > 3 else 0,
                      fontsize=8)
        ax.set_yticks(range(c), labels, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("given label")
    fig.colorbar(im, ax=ax, shrink=0.8, label="fraction of the row")
    return _png(fig)


def plot_reliability(bins: list[dict[str, Any]]) -> bytes:
    """Accuracy against confidence per bin (the diagonal is perfect calibration), counts below."""
    fig = _figure(4.2, 4.4)
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    lo = np.array([b["lo"] for b in bins], dtype=float)
    hi = np.array([b["hi"] for b in bins], dtype=float)
    acc = np.array([np.nan if b.get("accuracy") is None else b["accuracy"] for b in bins], dtype=float)
    conf = np.array([np.nan if b.get("confidence") is None else b["confidence"] for b in bins], dtype=float)
    count = np.array([b.get("count", 0) for b in bins], dtype=float)
    full = ~np.isnan(acc)
    top.bar(lo[full], acc[full], width=(hi - lo)[full], align="edge", color="#4c78a8", edgecolor="white",
            label="accuracy")
    top.scatter(((lo + hi) / 2)[full], conf[full], marker="_", s=120, linewidths=2, color="#e45756", zorder=3,
                label="mean confidence")
    top.plot([0, 1], [0, 1], color="#333", lw=1, ls="--", label="perfect")
    top.set_xlim(0, 1)
    top.set_ylim(0, 1)
    top.set_ylabel("accuracy")
    top.legend(fontsize=7, loc="upper left")
    bottom.bar(lo, count, width=hi - lo, align="edge", color="#999", edgecolor="white")
    bottom.set_xlabel("confidence (top class)")
    bottom.set_ylabel("samples")
    return _png(fig)


def plot_f1(per_class: list[dict[str, Any]], baseline: dict[str, float | None] | None) -> bytes:
    names = [r["class"] for r in per_class]
    f1 = np.array([r["f1"] for r in per_class], dtype=float)
    c = len(names)
    fig = _figure(min(12.0, max(4.2, 0.32 * c + 1.5)), 3.2)
    ax = fig.add_subplot()
    ax.bar(range(c), f1, color="#4c78a8", label="F1")
    if baseline:
        b = np.array([np.nan if baseline.get(n) is None else baseline[n] for n in names], dtype=float)
        ax.scatter(range(c), b, marker="_", s=160, color="#e45756", linewidths=2, zorder=3, label="baseline F1")
        ax.legend(fontsize=7, loc="lower right")
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("F1")
    if c <= TICKS_UP_TO:
        labels = [_mpl(n, 10) for n in names]
        ax.set_xticks(range(c), labels, rotation=90 if c > 10 or max(map(len, labels), default=0) > 3 else 0,
                      fontsize=8)
    return _png(fig)


def plot_shards(per_shard: list[dict[str, Any]]) -> bytes:
    s = len(per_shard)
    fig = _figure(min(12.0, max(3.6, 0.5 * s + 1.5)), 3.2)
    ax = fig.add_subplot()
    x = np.arange(s)
    acc = [np.nan if r.get("accuracy") is None else r["accuracy"] for r in per_shard]
    agree = [np.nan if r.get("agreement") is None else r["agreement"] for r in per_shard]
    ax.bar(x - 0.2, acc, width=0.4, color="#4c78a8", label="accuracy")
    ax.bar(x + 0.2, agree, width=0.4, color="#72b7b2", label="agreement with ensemble")
    ax.set_xticks(x, [str(r["shard"]) for r in per_shard] if s <= TICKS_UP_TO else [])
    ax.set_xlabel("shard")
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=7, loc="lower right")
    return _png(fig)


def _img(png: bytes, caption: str, alt: str) -> str:
    return (f'<figure><img src="{png_data_uri(png)}" alt="{_esc(alt)}"><figcaption>{_esc(caption)}</figcaption>'
            "</figure>")


# -- samples ---------------------------------------------------------------------------------
class _Samples:
    """The sample cell of a row: a thumbnail for an image sample, the first values for a vector."""

    def __init__(self, table: SampleTable | None):
        self.table = table
        self.pos = {str(s): i for i, s in enumerate(table.ids.tolist())} if table is not None else {}

    def cell(self, sid: str) -> str:
        i = self.pos.get(str(sid))
        if i is None or self.table is None:
            return '<td class="flat">—</td>'
        row = self.table.features[i]
        if is_image_row(row):
            uri = png_data_uri(thumbnail_png(row, THUMB_PX))
            return f'<td><img class="t" src="{uri}" alt="{_esc(sid)}" title="{_esc(sid)}"></td>'
        flat = np.ravel(row)
        vals = ", ".join(f"{float(v):.3g}" for v in flat[:FEATURES_SHOWN])
        more = f", … ({flat.size} values)" if flat.size > FEATURES_SHOWN else ""
        return f"<td><code>{_esc(vals + more)}</code></td>"


def _table(head: list[str], rows: list[str]) -> str:
    th = "".join(f"<th>{_esc(h)}</th>" for h in head)
    return f'<div class="wrap"><table><thead><tr>{th}</tr></thead><tbody>{"".join(rows)}</tbody></table></div>'


def _tr(cells: list[str]) -> str:
    return "<tr>" + "".join(cells) + "</tr>"


def _td(x: Any, numeric: bool = False) -> str:
    return f'<td class="n">{_esc(x)}</td>' if numeric else f"<td>{_esc(x)}</td>"


def _where(r: dict[str, Any]) -> str:
    if not r.get("train"):
        return "test"
    sl = r.get("slice")  # the hardest rows carry no slice
    return f"train, shard {r.get('shard')}" + (f", slice {sl}" if sl is not None and sl >= 0 else "")


# -- sections --------------------------------------------------------------------------------
def _header(report: dict[str, Any]) -> str:
    title = f"Experiment {report.get('experiment', '?')}"
    sub = (f"model {report.get('model', '?')} version {report.get('version', '?')} · dataset "
           f"{report.get('dataset', '?')} revision {report.get('datasetRevision', '?')} · "
           f"{report.get('split', '?')} split · {report.get('samples', '?')} samples")
    return f"<h1>{_esc(title)}</h1><div class='sub'>{_esc(sub)}</div>"


def _cards(report: dict[str, Any], comparison: dict[str, Any] | None) -> str:
    m = report.get("metrics") or {}
    deltas = (comparison or {}).get("deltas") or {}
    issues = report.get("labelIssues") or {}
    items = [
        ("accuracy", m.get("accuracy", report.get("accuracy")), "accuracy", "higher"),
        ("macro F1", m.get("macroF1"), "macroF1", "higher"),
        ("calibration error (ECE)", m.get("calibrationError"), "calibrationError", "lower"),
        ("shard disagreement", report.get("disagreement"), None, "lower"),
    ]
    out = []
    for label, value, key, better in items:
        delta = f"<div>{_signed(deltas.get(key), better)} vs baseline</div>" if comparison and key else ""
        out.append(f'<div class="card"><div class="k">{_esc(label)}</div>'
                   f'<div class="v">{_num(value)}</div>{delta}</div>')
    if issues:
        out.append(f'<div class="card"><div class="k">label-issue candidates</div>'
                   f'<div class="v">{_esc(issues.get("flagged", len(issues.get("candidates", []))))}</div></div>')
    return f'<div class="cards">{"".join(out)}</div>'


def _plots(report: dict[str, Any], comparison: dict[str, Any] | None) -> str:
    m = report.get("metrics") or {}
    names = report.get("classNames") or [r["class"] for r in m.get("perClass", [])]
    figs = []
    if m.get("confusion") and names:
        figs.append(_img(plot_confusion(m["confusion"], names), "confusion matrix (rows: given label)",
                         "confusion matrix"))
    if m.get("calibration"):
        figs.append(_img(plot_reliability(m["calibration"]), "reliability diagram (calibration)",
                         "reliability diagram"))
    if m.get("perClass"):
        base = {r["class"]: r.get("baselineF1") for r in comparison.get("perClass", [])} if comparison else None
        figs.append(_img(plot_f1(m["perClass"], base), "F1 per class", "F1 per class"))
    if report.get("perShard"):
        figs.append(_img(plot_shards(report["perShard"]), "per-shard accuracy and agreement with the ensemble",
                         "per-shard accuracy"))
    return f'<h2>Plots</h2><div class="plots">{"".join(figs)}</div>' if figs else ""


def _per_class(report: dict[str, Any], comparison: dict[str, Any] | None) -> str:
    rows_in = (report.get("metrics") or {}).get("perClass") or []
    if not rows_in:
        return ""
    changes = {r["class"]: r for r in (comparison or {}).get("perClass", [])}
    head = ["class", "precision", "recall", "F1", "support"]
    if comparison:
        head += ["baseline F1", "ΔF1", "baseline recall", "Δrecall"]
    rows = []
    for r in rows_in:
        cells = [_td(r["class"]), _td(_num(r.get("precision")), True), _td(_num(r.get("recall")), True),
                 _td(_num(r.get("f1")), True), _td(r.get("support"), True)]
        if comparison:
            ch = changes.get(r["class"], {})
            d_recall = (None if ch.get("baselineRecall") is None or ch.get("recall") is None
                        else ch["recall"] - ch["baselineRecall"])
            cells += [_td(_num(ch.get("baselineF1")), True), f'<td class="n">{_signed(ch.get("deltaF1"))}</td>',
                      _td(_num(ch.get("baselineRecall")), True), f'<td class="n">{_signed(d_recall)}</td>']
        rows.append(_tr(cells))
    return "<h2>Per class</h2>" + _table(head, rows)


def _per_shard(report: dict[str, Any]) -> str:
    shards = report.get("perShard") or []
    if not shards:
        return ""
    rows = [_tr([_td(r["shard"], True), _td(r.get("samples", ""), True), _td(_num(r.get("accuracy")), True),
                 _td(_num(r.get("agreement")), True)]) for r in shards]
    note = (f"<p class='note'>The shards disagree on {_num(report.get('disagreement'))} of the split's samples. "
            "Each shard is scored on the split's samples it did not train on (on the test split, all of them). "
            "Agreement: the fraction of those on which a shard's answer equals the ensemble's.</p>")
    return "<h2>Per shard</h2>" + note + _table(["shard", "samples", "accuracy", "agreement"], rows)


def _hardest(report: dict[str, Any], samples: _Samples) -> str:
    rows_in = report.get("hardest") or []
    if not rows_in:
        return ""
    rows = [_tr([samples.cell(r["id"]), _td(r["id"]), _td(r.get("label")), _td(r.get("predicted")),
                 _td(_num(r.get("confidence")), True), _td(_num(r.get("labelProb")), True), _td(_where(r))])
            for r in rows_in]
    note = ("<p class='note'>The split's samples with the lowest ensemble probability of their given label, "
            "lowest first.</p>")
    return ("<h2>Hardest samples</h2>" + note
            + _table(["sample", "id", "label", "predicted", "confidence", "p(label)", "where"], rows))


def _label_issues(report: dict[str, Any], samples: _Samples) -> str:
    issues = report.get("labelIssues")
    if not issues:
        return ""
    cands = issues.get("candidates") or []
    shown = cands[:LABEL_ISSUES_SHOWN]
    rows = [_tr([samples.cell(r["id"]), _td(r["id"]), _td(r.get("label")), _td(r.get("suggested")),
                 _td(_num(r.get("score")), True), _td(_num(r.get("labelProb")), True),
                 _td(_num(r.get("suggestedProb")), True), _td(_where(r))])
            for r in shown]
    more = f", the first {len(shown)} shown (all in the JSON)" if len(cands) > len(shown) else ""
    note = (f"<p class='note'>{_esc(issues.get('flagged', len(cands)))} flagged over all active samples from "
            f"out-of-shard probabilities{_esc(more)}. Method: {_esc(issues.get('method', '?'))}. "
            "Fix labels with <code>shardwise relabel</code> or <code>shardwise ui</code>.</p>")
    if issues.get("outOfShard") is False:
        note += ("<p class='note warn'>This model has one shard, so no model is out-of-shard for a training "
                 "sample: its training candidates are scored by the model that learned their labels, and "
                 "mislabelled ones are easily missed. Two or more shards give a real cross-validation.</p>")
    if not rows:
        return "<h2>Label-issue candidates</h2>" + note
    return ("<h2>Label-issue candidates</h2>" + note
            + _table(["sample", "id", "label", "suggested", "score", "p(label)", "p(suggested)", "where"], rows))


def _flip_table(title: str, items: list[dict[str, Any]], samples: _Samples) -> str:
    shown = items[:FLIPS_SHOWN]
    rows = [_tr([samples.cell(r["id"]), _td(r["id"]), _td(r.get("label")), _td(r.get("before")), _td(r.get("after"))])
            for r in shown]
    more = f" (first {len(shown)} shown)" if len(items) > len(shown) else ""
    body = _table(["sample", "id", "label", "before", "after"], rows) if rows else "<p class='note'>none</p>"
    return f"<div><h3>{_esc(title)}: {len(items)}{_esc(more)}</h3>{body}</div>"


def _comparison(comparison: dict[str, Any] | None, report: dict[str, Any], samples: _Samples) -> str:
    if not comparison:
        return ""
    d = comparison.get("deltas") or {}
    head = (f"<h2>Compared with {_esc(comparison.get('baseline'))} (version "
            f"{_esc(comparison.get('baselineVersion'))})</h2>")
    deltas = ("<p>Δaccuracy " + _signed(d.get("accuracy")) + " · Δmacro F1 " + _signed(d.get("macroF1"))
              + " · Δcalibration error " + _signed(d.get("calibrationError"), "lower") + " (current minus baseline)</p>"
              + "<p>Δaccuracy with both runs judged on the current labels (the model's share) "
              + _signed(comparison.get("modelDelta")) + "</p>")
    note = (f"<p class='note'>{_esc(comparison.get('common'))} samples of the {_esc(report.get('split', '?'))} split "
            "are in both runs (matched by id). Right and wrong are judged against the current labels for both runs, "
            "so a sample counts only when its prediction changed; largest change of the label's probability "
            "first. Per-class changes are in the per-class table above.</p>")
    flips = (_flip_table("right → wrong", comparison.get("rightToWrong") or [], samples)
             + _flip_table("wrong → right", comparison.get("wrongToRight") or [], samples))
    return head + deltas + note + f'<div class="cols">{flips}</div>'


def render_html(report: dict[str, Any], preds: Predictions | None = None, table: SampleTable | None = None,
                comparison: dict[str, Any] | None = None) -> str:
    """The whole report page. `table` (the Dataset's samples) gives the thumbnails; without it the
    sample columns are blank. `comparison` defaults to the report's own. `preds` is accepted for
    symmetry with the other diagnosis views; everything drawn here is already in the report."""
    comparison = comparison if comparison is not None else report.get("comparison")
    samples = _Samples(table)
    title = _esc(f"Shardwise report: {report.get('experiment', '?')}")
    body = "".join([
        _header(report), _cards(report, comparison), _plots(report, comparison), _per_class(report, comparison),
        _comparison(comparison, report, samples), _per_shard(report), _hardest(report, samples),
        _label_issues(report, samples),
    ])
    return ("<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>{title}</title><style>{CSS}</style></head><body>{body}</body></html>\n")
