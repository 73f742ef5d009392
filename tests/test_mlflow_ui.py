"""The review a person does, in a real browser: a finished small search served by a real
`mlflow server` on loopback, opened in headless Chromium (Debian's chromium and
chromium-driver, driven by Selenium), with the runs, metrics, params, tags and artifacts a
reviewer needs checked on the pages MLflow's UI renders.

Screenshots go to the test's folder; with TUNER_UI_SCREENSHOTS=DIR they are kept there too
(docs/mlflow-*.png were made that way).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import SPACES
from mlflow.tracking import MlflowClient
from services import MlflowServer

from tuner.driver.cli import main

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = [
    pytest.mark.slow,  # a whole search and a browser: minutes (the fast tier: -m "not slow")
    pytest.mark.skipif(CHROMIUM is None or CHROMEDRIVER is None,
                       reason="needs Debian's chromium and chromium-driver (apt-get install "
                              "chromium chromium-driver; .ci/run installs them)"),
]


@pytest.fixture
def mlflow_server(workdir: Path) -> Iterator[str]:
    """`mlflow server` over the search's SQLite store, on loopback only."""
    server = MlflowServer(workdir.parent, backend_store_uri=f"sqlite:///{workdir / 'mlflow.db'}")
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def browser() -> Iterator[object]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     "--window-size=1600,1000"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def _page_text(driver: object, url: str, *expected: str, timeout_s: float = 60) -> str:
    """Open `url` and wait until the rendered page shows every expected text."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url)  # type: ignore[attr-defined]

    def shown(d: object) -> str | bool:
        text = d.find_element(By.TAG_NAME, "body").text  # type: ignore[attr-defined]
        return text if all(item in text for item in expected) else False

    try:
        return WebDriverWait(driver, timeout_s).until(shown)
    except TimeoutException:
        text = driver.find_element(By.TAG_NAME, "body").text  # type: ignore[attr-defined]
        missing = [item for item in expected if item not in text]
        raise AssertionError(f"{url}: not shown: {missing}\n{text[:1500]}") from None


def _screenshot(driver: object, folder: Path, name: str) -> None:
    path = folder / f"mlflow-{name}.png"
    driver.save_screenshot(str(path))  # type: ignore[attr-defined]
    keep = os.environ.get("TUNER_UI_SCREENSHOTS")
    if keep:
        shutil.copy(path, Path(keep) / path.name)


def test_a_reviewer_finds_runs_metrics_and_artifacts_in_the_mlflow_ui(
        ray_local, workdir: Path, capsys, request: pytest.FixtureRequest) -> None:
    assert main(["search", "--space", str(SPACES / "quick_train.yaml"), "--trials", "3",
                 "--set", "objective=[samples_per_sec, samples_per_dollar]",
                 "--set", "measure.max_timed_s=0.5"]) == 0  # a test's seconds, not 2 s a trial
    out = capsys.readouterr().out
    server = request.getfixturevalue("mlflow_server")
    driver = request.getfixturevalue("browser")
    client = MlflowClient(tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("quick_train")
    runs = client.search_runs([experiment.experiment_id])
    [parent] = [r for r in runs if r.data.tags.get("tuner.kind") == "search"]
    trial = next(r for r in runs if r.data.tags.get("tuner.trial") == "1")
    base = f"{server}/#/experiments/{experiment.experiment_id}"

    # the links the review lines print, opened in a fresh browser profile: the search's run
    # with its figures, and its trials side by side with their knobs and measurements
    links = {line.split(": ", 1)[0].strip(): line.split(": ", 1)[1].replace(
        "http://127.0.0.1:5000", server) for line in out.splitlines()
        if line.startswith("  ") and "http://127.0.0.1:5000/#/" in line}
    first = _page_text(driver, links["this search"], "best_samples_per_sec", "best_speedup",
                       "baseline_samples_per_sec", "space.budget.trials", "best.batch_size")
    assert "Evaluation runs" not in first  # the model-training view, not the GenAI one
    _screenshot(driver, workdir.parent, "first-screen")
    # (the metric names past the first few are rendered only when scrolled into view)
    _page_text(driver, links["baseline and best trials compared"], "trial-000", "batch_size",
               "Comparing ", "Metrics", "compile_s", "Parallel Coordinates Plot")
    _screenshot(driver, workdir.parent, "compared")

    # the experiment's runs table: the search and its trials (nested under it)
    _page_text(driver, f"{base}/runs", parent.info.run_name, "4 matching runs")
    _screenshot(driver, workdir.parent, "runs")

    # the search's own run: the figures a reviewer wants first
    text = _page_text(driver, f"{base}/runs/{parent.info.run_id}", "best_samples_per_sec",
                      "best_speedup", "best_samples_per_dollar", "trial-000")
    assert "tuner.most_samples_per_dollar" in text and "tuner.best_config" in text
    _screenshot(driver, workdir.parent, "search-run")

    # its artifacts: the summary table, the plots, the best config, the fingerprint
    _page_text(driver, f"{base}/runs/{parent.info.run_id}/artifacts", "summary.md",
               "optimization_history.png", "knob_effects.png", "knob_effects.md",
               "pareto_front.png", "fingerprint.json", "quick_train.yaml",
               "quick_train.report.html", "parallel_coordinates.png", "slice.png",
               "timeline.png", "space.resolved.yaml")
    from selenium.webdriver.common.by import By

    driver.find_element(By.XPATH, "//*[text()='summary.md']").click()
    _page_text(driver, driver.current_url, "Top configs by samples_per_sec", "speed-up",
               "Most samples per USD")
    _screenshot(driver, workdir.parent, "summary")

    # report.html: self-contained (no server), its tables and every figure shown
    report = workdir / "best" / "quick_train.report.html"
    assert f"report: {report}" in out
    _page_text(driver, report.as_uri(), "Study quick_train", "Top configs by samples_per_sec",
               "What each knob did", "Best config", "knobs:", "Figures")
    sizes = driver.execute_script(
        "return Array.from(document.images).map(i => i.complete ? i.naturalWidth : 0)")
    assert len(sizes) >= 5 and all(width > 100 for width in sizes), sizes
    _screenshot(driver, workdir.parent, "report")

    # a trial: its knobs as params, its measurements as metrics, its outcome as tags
    text = _page_text(driver, f"{base}/runs/{trial.info.run_id}", "batch_size",
                      "samples_per_sec", "step_time_median_s", "samples_per_dollar")
    assert "tuner.status" in text
    _screenshot(driver, workdir.parent, "trial-run")
