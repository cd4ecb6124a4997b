"""The diagnosis from predictions: metrics against scikit-learn, out-of-shard by hand, label issues."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.calibration import calibration_curve
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

from shardwise.diagnosis import metrics as mt
from shardwise.diagnosis.diagnose import diagnose
from shardwise.diagnosis.label_issues import (
    class_thresholds,
    cleanlab_issues,
    confident_joint_issues,
    out_of_shard_issues,
    precision_at,
    recall_at,
)
from shardwise.diagnosis.predictions import Predictions


def random_case(seed: int, m: int = 400, c: int = 7, skill: float = 2.0):
    """Labels and predictions that agree more than chance; some classes may be rare or never predicted."""
    rng = np.random.default_rng(seed)
    labels = rng.choice(c, m, p=rng.dirichlet(np.ones(c) * 0.7))
    logits = skill * np.eye(c)[labels] + rng.normal(0, 1.5, (m, c))
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return labels, probs, c


@pytest.mark.parametrize("seed", range(6))
def test_classification_metrics_equal_sklearn(seed):
    labels, probs, c = random_case(seed, m=50 + 60 * seed, c=3 + seed)
    pred = probs.argmax(1)
    conf = mt.confusion(labels, pred, c)
    np.testing.assert_array_equal(conf, confusion_matrix(labels, pred, labels=range(c)))
    p, r, f, s = precision_recall_fscore_support(labels, pred, labels=range(c), zero_division=0)
    pc = mt.per_class(conf)
    np.testing.assert_allclose(pc.precision, p)
    np.testing.assert_allclose(pc.recall, r)
    np.testing.assert_allclose(pc.f1, f)
    np.testing.assert_array_equal(pc.support, s)
    assert pc.macro_f1 == pytest.approx(f1_score(labels, pred, average="macro", zero_division=0))
    assert mt.accuracy(labels, pred) == pytest.approx(accuracy_score(labels, pred))


def test_macro_f1_leaves_out_a_class_that_is_neither_label_nor_prediction():
    labels, pred = np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1])
    pc = mt.per_class(mt.confusion(labels, pred, 4))  # classes 2 and 3 never occur
    assert pc.present.tolist() == [True, True, False, False]
    assert pc.macro_f1 == pytest.approx(f1_score(labels, pred, average="macro")) == pytest.approx((2 / 3 + 0.8) / 2)


@pytest.mark.parametrize("seed", range(4))
def test_calibration_bins_equal_sklearn_calibration_curve(seed):
    labels, probs, _ = random_case(seed, m=3000)
    pred = probs.argmax(1)
    confidence, correct = probs.max(1), pred == labels
    cal = mt.calibration(confidence, correct)
    assert len(cal.count) == 15 and cal.edges[0] == 0.0 and cal.edges[-1] == 1.0 and cal.count.sum() == 3000
    prob_true, prob_pred = calibration_curve(correct, confidence, n_bins=15, strategy="uniform")
    full = cal.count > 0
    np.testing.assert_allclose(cal.accuracy[full], prob_true)
    np.testing.assert_allclose(cal.confidence[full], prob_pred)
    assert np.isnan(cal.accuracy[~full]).all() and np.isnan(cal.confidence[~full]).all()
    ece = sum(n * abs(a - q) for n, a, q in zip(cal.count[full], prob_true, prob_pred)) / 3000
    assert cal.error == pytest.approx(ece)


def test_calibration_error_is_the_gap_for_overconfidence_and_small_when_calibrated():
    # every answer 90 % sure and half right: the error is 0.4, all in the bin (13/15, 14/15]
    cal = mt.calibration(np.full(10, 0.9), np.arange(10) % 2 == 0)
    assert cal.error == pytest.approx(0.4) and cal.count[13] == 10
    # right with exactly the stated probability: the error is sampling noise only
    rng = np.random.default_rng(0)
    conf = rng.uniform(0.1, 1.0, 200_000)
    assert mt.calibration(conf, rng.random(conf.size) < conf).error < 0.01
    # the bins are (lo, hi]: 1/15 falls in the first bin, 0 too; nothing is an empty calibration
    edge = mt.calibration(np.array([0.0, 1 / 15, 1.0]), np.array([True, True, False]))
    assert edge.count[0] == 2 and edge.count[-1] == 1
    assert mt.calibration(np.array([]), np.array([], bool)).error is None


def test_per_shard_accuracy_agreement_and_disagreement():
    labels, probs, c = random_case(1, m=200)
    rng = np.random.default_rng(2)
    shards = np.stack([probs, np.roll(probs, 1, axis=1), rng.dirichlet(np.ones(c), 200)])  # (3, 200, C)
    ens = shards.mean(0).argmax(1)
    acc, agree, n = mt.per_shard(shards, labels, ens)
    for k in range(3):
        assert acc[k] == pytest.approx(accuracy_score(labels, shards[k].argmax(1)))
        assert agree[k] == pytest.approx(accuracy_score(ens, shards[k].argmax(1)))
    assert n.tolist() == [200, 200, 200]
    # scored on a subset each (the samples a shard did not train on): the same figures over that subset
    scored = rng.random((3, 200)) < 0.6
    scored[2] = False
    acc, agree, n = mt.per_shard(shards, labels, ens, scored)
    for k in range(2):
        assert acc[k] == pytest.approx(accuracy_score(labels[scored[k]], shards[k].argmax(1)[scored[k]]))
        assert agree[k] == pytest.approx(accuracy_score(ens[scored[k]], shards[k].argmax(1)[scored[k]]))
    assert n.tolist() == scored.sum(1).tolist() and np.isnan(acc[2]) and np.isnan(agree[2])
    votes = shards.argmax(2)
    assert mt.disagreement(shards) == pytest.approx(np.mean([len(set(votes[:, i])) > 1 for i in range(200)]))
    same = np.stack([probs, probs])
    assert mt.disagreement(same) == 0.0 and mt.disagreement(np.zeros((2, 0, c))) is None


def test_hardest_is_lowest_label_probability_first_ties_in_order():
    assert mt.hardest(np.array([0.5, 0.1, 0.9, 0.1, 0.3]), 3).tolist() == [1, 3, 4]


# -- Predictions.out_of_shard by hand ----------------------------------------------------------
def tiny() -> Predictions:
    """3 shards, 3 samples, 2 classes: sample a trained in shard 0, b in shard 2, c a test sample."""
    probs = np.array([[[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]],
                      [[0.3, 0.7], [0.4, 0.6], [0.5, 0.5]],
                      [[0.1, 0.9], [1.0, 0.0], [0.7, 0.3]]], dtype=np.float32)
    return Predictions(np.array(["a", "b", "c"]), np.array([0, 1, 0]), np.array([True, True, False]),
                       np.array([0, 2, -1], np.int32), np.array([1, 0, -1], np.int32), probs, ("x", "y"))


def test_out_of_shard_averages_the_models_that_did_not_train_on_the_sample():
    oos = tiny().out_of_shard()
    np.testing.assert_allclose(oos[0], [(0.3 + 0.1) / 2, (0.7 + 0.9) / 2], rtol=1e-6)  # shards 1, 2
    np.testing.assert_allclose(oos[1], [(0.2 + 0.4) / 2, (0.8 + 0.6) / 2], rtol=1e-6)  # shards 0, 1
    np.testing.assert_allclose(oos[2], [(0.6 + 0.5 + 0.7) / 3, (0.4 + 0.5 + 0.3) / 3], rtol=1e-6)  # all three
    p = tiny()
    one = Predictions(p.ids, p.labels, p.train, np.array([0, 0, -1], np.int32), p.slice, p.probs[:1], p.class_names)
    np.testing.assert_allclose(one.out_of_shard(), p.probs[0])  # one shard: the model itself


# -- label issues ------------------------------------------------------------------------------
def noisy_case(seed: int = 0, m: int = 2000, c: int = 10, flip: float = 0.05):
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, c, m)
    logits = 3.0 * np.eye(c)[truth] + rng.normal(0, 1.0, (m, c))
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    flipped = rng.choice(m, int(flip * m), replace=False)
    labels = truth.copy()
    labels[flipped] = (truth[flipped] + rng.integers(1, c, flipped.size)) % c
    return labels, probs, truth, flipped


def test_class_thresholds_are_mean_self_confidence():
    labels = np.array([0, 0, 1])
    probs = np.array([[0.8, 0.2, 0.0], [0.6, 0.4, 0.0], [0.3, 0.7, 0.0]])
    t = class_thresholds(labels, probs)
    assert t[0] == pytest.approx(0.7) and t[1] == pytest.approx(0.7) and t[2] == np.inf


def test_out_of_shard_issues_find_flipped_labels_and_suggest_the_true_class():
    labels, probs, truth, flipped = noisy_case()
    li = out_of_shard_issues(labels, probs)
    k = len(flipped)
    assert recall_at(li.ranked, flipped, 2 * k) >= 0.9 and precision_at(li.ranked, flipped, k) >= 0.75
    top = li.ranked[:2 * k]
    hit = top[np.isin(top, flipped)]
    assert (li.suggested[hit] == truth[hit]).mean() >= 0.85
    assert np.all(np.diff(li.score[li.ranked]) <= 0) and np.allclose(li.score, 1 - li.label_prob)
    assert li.flagged == len(li.ranked) and np.all(li.suggested != labels)
    # flagged exactly: predicted as another class, and the label's probability below its class's threshold
    t = class_thresholds(labels, probs)
    rule = (probs.argmax(1) != labels) & (probs[np.arange(len(labels)), labels] < t[labels])
    assert set(li.ranked.tolist()) == set(np.flatnonzero(rule).tolist())
    np.testing.assert_array_equal(li.suggested[li.ranked], probs.argmax(1)[li.ranked])


def test_strict_confident_learning_flags_where_the_suggested_class_reaches_its_threshold():
    labels, probs, _, _ = noisy_case(1)
    li = confident_joint_issues(labels, probs)
    t, r = class_thresholds(labels, probs), li.ranked
    assert li.flagged > 0 and np.all(li.label_prob[r] < t[labels[r]]) \
        and np.all(li.suggested_prob[r] >= t[li.suggested[r]])
    assert np.all(np.diff(li.score[r]) <= 0)


def test_cleanlab_is_wrapped_on_the_same_probabilities():
    pytest.importorskip("cleanlab")
    from cleanlab.filter import find_label_issues

    labels, probs, _, flipped = noisy_case(2)
    li = cleanlab_issues(labels, probs)
    np.testing.assert_array_equal(li.ranked,
                                  find_label_issues(labels, probs, return_indices_ranked_by="self_confidence"))
    assert 0 < li.flagged < len(labels) and recall_at(li.ranked, flipped, 2 * len(flipped)) > 0.3


def test_clean_confident_labels_are_not_flagged():
    labels = np.repeat(np.arange(3), 10)
    probs = np.full((30, 3), 0.05)
    probs[np.arange(30), labels] = 0.9
    assert out_of_shard_issues(labels, probs).flagged == 0 and confident_joint_issues(labels, probs).flagged == 0


def test_recall_and_precision_at_k():
    ranked = np.array([5, 1, 9, 3])
    assert recall_at(ranked, np.array([1, 3, 7]), 2) == pytest.approx(1 / 3)
    assert recall_at(ranked, np.array([1, 3, 7]), 4) == pytest.approx(2 / 3)
    assert precision_at(ranked, np.array([1, 3, 7]), 2) == 0.5 and precision_at(ranked, np.array([1]), 8) == 1 / 8


# -- the report parts --------------------------------------------------------------------------
def predictions(seed: int = 0, shards: int = 4, aggregation: str = "softmax-mean") -> tuple[Predictions, np.ndarray]:
    labels, probs, _, flipped = noisy_case(seed, m=600)
    rng = np.random.default_rng(seed + 1)
    train = rng.random(600) < 0.8
    shard = np.where(train, rng.integers(0, shards, 600), -1).astype(np.int32)
    slc = np.where(train, rng.integers(0, 2, 600), -1).astype(np.int32)
    # each shard's model: noisy around the truth, and it fits the (possibly flipped) labels it trained on
    logits = np.log(probs)[None] + rng.normal(0, 0.7, (shards, 600, 10))
    own = shard[:, None] == np.arange(shards)[None]  # (M, S)
    logits += 6.0 * own.T[..., None] * np.eye(10)[labels][None]
    p = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    ids = np.array([f"s{i:04d}" for i in range(600)])
    return Predictions(ids, labels, train, shard, slc, p.astype(np.float32), tuple("abcdefghij"), aggregation), flipped


@pytest.mark.parametrize("aggregation", ["softmax-mean", "vote"])
def test_diagnose_report_parts_are_consistent_and_json_ready(aggregation):
    preds, flipped = predictions(aggregation=aggregation)
    rep = diagnose(preds, "test", top_hardest=20, top_candidates=60)
    json.dumps(rep, allow_nan=False)
    test = preds.split("test")
    pred = test.predicted()
    assert rep["samples"] == len(test) and rep["classNames"] == list("abcdefghij")
    assert rep["accuracy"] == rep["metrics"]["accuracy"] == pytest.approx(float((pred == test.labels).mean()))
    conf = np.array(rep["metrics"]["confusion"])
    assert conf.sum() == len(test) and np.trace(conf) == int((pred == test.labels).sum())
    assert [c["support"] for c in rep["metrics"]["perClass"]] == np.bincount(test.labels, minlength=10).tolist()
    assert rep["metrics"]["macroF1"] == pytest.approx(f1_score(test.labels, pred, average="macro"))
    cal = rep["metrics"]["calibration"]
    assert len(cal) == 15 and sum(b["count"] for b in cal) == len(test) and 0 <= rep["metrics"]["calibrationError"] <= 1
    assert [s["shard"] for s in rep["perShard"]] == [0, 1, 2, 3]
    ens_pred = test.predicted()
    for k, row in enumerate(rep["perShard"]):  # the test split: every sample is out-of-shard for every shard
        mine = test.probs[k].argmax(1)
        assert row["samples"] == len(test)
        assert row["accuracy"] == pytest.approx(float((mine == test.labels).mean()))
        assert row["agreement"] == pytest.approx(float((mine == ens_pred).mean()))
    votes = test.probs.argmax(2)
    assert rep["disagreement"] == pytest.approx(float((votes != votes[:1]).any(0).mean())) \
        and 0 < rep["disagreement"] < 1
    # on the training split a shard is never scored on the samples it trained on
    tr = diagnose(preds, "train", top_hardest=5, top_candidates=5)
    train = preds.split("train")
    for k, row in enumerate(tr["perShard"]):
        out = train.shard != k
        assert row["samples"] == int(out.sum()) < len(train)
        assert row["accuracy"] == pytest.approx(float((train.probs[k].argmax(1)[out] == train.labels[out]).mean()))
    hard = rep["hardest"]
    assert len(hard) == 20 and all(not h["train"] and h["shard"] == -1 for h in hard)
    assert [h["labelProb"] for h in hard] == sorted(h["labelProb"] for h in hard)
    li = rep["labelIssues"]
    assert len(li["candidates"]) == 60 <= li["flagged"]
    assert {c["train"] for c in li["candidates"]} == {True, False}  # over every sample, not only the split
    scores = [c["score"] for c in li["candidates"]]
    assert scores == sorted(scores, reverse=True)
    top = {c["id"] for c in li["candidates"]}
    assert len(top & set(preds.ids[flipped])) >= 27  # of 30; the shards' own fit of a flipped label does not hide it


def test_diagnose_an_empty_split_has_no_metrics_but_still_label_issues():
    preds, _ = predictions()
    only_train = preds.subset(preds.train)
    rep = diagnose(only_train, "test")
    assert rep["samples"] == 0 and rep["accuracy"] is None and rep["metrics"] is None and rep["hardest"] == []
    assert rep["labelIssues"]["flagged"] > 0
    with pytest.raises(ValueError, match="split"):
        diagnose(preds, "validation")


def test_the_page_lists_every_flagged_sample_when_the_report_keeps_only_the_first():
    from shardwise.ui.items import candidate_rows

    preds, _ = predictions()
    full = diagnose(preds, "test", top_candidates=10**6)
    short = diagnose(preds, "test", top_candidates=5)
    flagged = full["labelIssues"]["flagged"]
    assert len(short["labelIssues"]["candidates"]) == 5 < flagged == short["labelIssues"]["flagged"]
    rows = candidate_rows(short, preds)
    assert len(rows) == flagged
    assert rows.ids.tolist() == [c["id"] for c in full["labelIssues"]["candidates"]]
    assert rows.ids[:5].tolist() == [c["id"] for c in short["labelIssues"]["candidates"]]  # the same ranking
