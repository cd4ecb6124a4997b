"""`shardwise ui` in a real headless browser over a real trained model and Experiment.

Needs Debian's chromium and chromium-driver (.ci/run installs them) and selenium (the test extra).
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from shardwise.datasets import DatasetStore
from shardwise.local.registry import Registry
from shardwise.local.runner import LocalRunner
from shardwise.store.layout import Layout
from shardwise.store.local import LocalStore
from tests.helpers import dataset, experiment, model
from tests.integration.test_ui_api import serving

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = "/usr/bin/chromedriver" if Path("/usr/bin/chromedriver").exists() else shutil.which("chromedriver")
pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    not (CHROMIUM and DRIVER),
    reason="needs chromium and chromedriver: apt-get install chromium chromium-driver (.ci/run installs them)")]
NS, EXP = "default", "digits-test"
SCREENSHOT_COPY = Path("/tmp/shardwise-ui.png")


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> LocalStore:
    """digits, a 2 x 2 ShardedModel and an Experiment on its test split, reconciled for real."""
    store = LocalStore(tmp_path_factory.mktemp("ui") / "store")
    reg = Registry(store, NS)
    reg.apply(dataset())
    reg.apply(model("m", shards=2, slices=2, epochs=2))
    reg.apply(experiment(EXP))
    LocalRunner(store, NS, parallel=2, log=lambda m: None).run(timeout=300)
    return store


@pytest.fixture
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    # The background-networking flags keep Chromium from calling out to its vendor's hosts:
    # the page under test is the only thing it may reach (127.0.0.1).
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1440,1100",
                "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--disable-default-apps"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(DRIVER), options=opts)
    driver.set_script_timeout(10)
    yield driver
    driver.quit()


def wait(driver, what, timeout: float = 15):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(lambda d: what())


def shown(driver) -> tuple[int, int, list[str]]:
    """(total, offset, ids of the cards) as the page shows them."""
    return driver.execute_script("""
        const r = document.querySelector('#range');
        return [Number(r.dataset.total), Number(r.dataset.offset),
                [...document.querySelectorAll('#grid .card')].map(c => c.dataset.id)];""")


def thumbs_loaded(driver) -> list:
    return driver.execute_script(
        "return [...document.querySelectorAll('#grid img.thumb')].map(i => i.complete ? i.naturalWidth : -1)")


def pick(driver, select_id: str, value: str) -> None:
    from selenium.webdriver.support.ui import Select

    Select(driver.find_element("id", select_id)).select_by_value(value)


def test_fix_labels_in_the_browser(trained, browser, tmp_path):
    from selenium.webdriver.common.by import By

    store, d = trained, browser
    L = Layout(NS)
    report = store.get_json(L.experiment_report(EXP))
    cands = report["labelIssues"]["candidates"]
    assert len(cands) > 24, "a weak 2 x 2 model on digits flags more than a page of candidates"

    with serving(store) as srv:
        d.get(srv.url)
        wait(d, lambda: shown(d)[0] > 0 and shown(d)[2])
        total, offset, ids = shown(d)
        assert (total, offset, ids) == (len(cands), 0, [c["id"] for c in cands[:24]])
        head = d.find_element(By.ID, "shows").text
        assert f"Experiment {EXP}" in head and "model m version 1" in head and "revision 1" in head
        assert "shardwise reconcile" in d.find_element(By.ID, "notice").text
        wait(d, lambda: all(w != -1 for w in thumbs_loaded(d)))
        assert len(thumbs_loaded(d)) == 24 and all(w > 0 for w in thumbs_loaded(d)), thumbs_loaded(d)

        # class filter: the count is that of the report's candidates with this given label
        label = max(report["classNames"], key=lambda c: sum(x["label"] == c for x in cands))
        pick(d, "f-label", label)
        wait(d, lambda: shown(d)[0] == sum(x["label"] == label for x in cands))
        assert {e.text for e in d.find_elements(By.CSS_SELECTOR, "#grid .card .given")} == {label}
        pick(d, "f-label", "")
        wait(d, lambda: shown(d)[0] == len(cands))

        # paging: 12 a page, next and previous
        pick(d, "f-limit", "12")
        wait(d, lambda: len(shown(d)[2]) == 12)
        d.find_element(By.ID, "next").click()
        wait(d, lambda: shown(d)[1] == 12)
        assert shown(d)[2] == [c["id"] for c in cands[12:24]]
        assert d.find_element(By.ID, "range").text == f"13–24 of {len(cands)}"
        d.find_element(By.ID, "prev").click()
        wait(d, lambda: shown(d)[1] == 0)

        def card(sid: str):
            return d.find_element(By.CSS_SELECTOR, f'#grid .card[data-id="{sid}"]')

        def gone(sid: str, n: int) -> bool:
            t, _, ids = shown(d)
            return t == len(cands) - n and sid not in ids

        # 1) accept the suggested label
        a = cands[0]
        card(a["id"]).find_element(By.CSS_SELECTOR, "button.accept").click()
        wait(d, lambda: gone(a["id"], 1))
        assert f"{a['id']} relabelled {a['label']} → {a['suggested']}" in d.find_element(By.ID, "message").text

        # 2) type a label: a wrong one is refused in the page, then a right one
        b = cands[1]
        typed = next(c for c in report["classNames"] if c not in (b["label"], b["suggested"]))
        box = card(b["id"]).find_element(By.CSS_SELECTOR, "input[name=label]")
        box.send_keys("cat")
        card(b["id"]).find_element(By.CSS_SELECTOR, "form.set button").click()
        wait(d, lambda: "is not a class" in card(b["id"]).find_element(By.CSS_SELECTOR, ".card-msg").text)
        assert card(b["id"]).find_element(By.CSS_SELECTOR, ".card-msg").text.startswith("label: 'cat'")
        box.clear()
        box.send_keys(typed)
        card(b["id"]).find_element(By.CSS_SELECTOR, "form.set button").click()
        wait(d, lambda: gone(b["id"], 2))

        # 3) drop a sample
        c = cands[2]
        card(c["id"]).find_element(By.CSS_SELECTOR, "button.drop").click()
        wait(d, lambda: gone(c["id"], 3))
        wait(d, lambda: len(d.find_elements(By.CSS_SELECTOR, "#change-list li")) == 3)
        assert "now at revision 4" in d.find_element(By.ID, "shows").text

        # browse: by class and by shard, with thumbnails
        d.find_element(By.CSS_SELECTOR, '.tabs button[data-view="browse"]').click()
        pick(d, "f-shard", "1")
        pick(d, "f-label", "4")
        v = DatasetStore(store, L).view("digits")
        a_ = v.assignment(2, 2, 0, True)
        expected = int(((a_.shard == 1) & (v.state.labels == 4) & v.state.active).sum())
        wait(d, lambda: shown(d)[0] == expected and len(shown(d)[2]) == min(12, expected))
        wait(d, lambda: thumbs_loaded(d) and all(w > 0 for w in thumbs_loaded(d)))

        d.find_element(By.CSS_SELECTOR, '.tabs button[data-view="candidates"]').click()
        pick(d, "f-shard", "")
        pick(d, "f-label", "")
        wait(d, lambda: shown(d)[0] == len(cands) - 3)
        wait(d, lambda: all(w > 0 for w in thumbs_loaded(d)))
        shot = tmp_path / "shardwise-ui.png"
        assert d.save_screenshot(str(shot))
        shutil.copyfile(shot, SCREENSHOT_COPY)

    pixels = np.asarray(Image.open(shot).convert("L"), dtype=np.float64)
    assert pixels.shape[0] > 500 and pixels.std() > 20, "the screenshot is blank"

    # three Dataset revisions, each recording what, who and when
    t0 = datetime.now(UTC)
    changes = [store.get_json(L.dataset_revision("digits", r))["change"] for r in (2, 3, 4)]
    assert DatasetStore(store, L).current_revision("digits") == 4
    assert changes[0] | {"at": None} == {"kind": "relabel", "by": "tester", "at": None,
                                         "labels": [{"id": a["id"], "from": a["label"], "to": a["suggested"]}]}
    assert changes[1]["labels"] == [{"id": b["id"], "from": b["label"], "to": typed}] and changes[1]["by"] == "tester"
    assert changes[2] | {"at": None} == {"kind": "drop", "by": "tester", "at": None, "ids": [c["id"]]}
    for ch in changes:
        at = datetime.strptime(ch["at"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        assert 0 <= (t0 - at).total_seconds() < 120
