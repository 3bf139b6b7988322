"""The similarity page at `/` in a real headless chromium: heatmaps equal cosines computed in Python."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from serve_helpers import running

pytest.importorskip("fastapi")
webdriver = pytest.importorskip("selenium.webdriver")

from elmo_fast import ElmoEmbedder  # noqa: E402
from elmo_fast.serve import create_app  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="no chromium/chromedriver binary (Debian: apt-get install chromium chromium-driver)",
)
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--no-first-run")
A = ["We", "sat", "on", "the", "bank", "of", "the", "river", "."]
B = ["She", "put", "her", "money", "in", "the", "bank", "."]


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=-1, keepdims=True)
    b = b / np.linalg.norm(b, axis=-1, keepdims=True)
    return a @ b.T


def test_page_draws_one_cosine_heatmap_per_layer(tmp_path: Path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    embedder = ElmoEmbedder(state="zero")
    ea, eb = embedder.embed_sentence(A), embedder.embed_sentence(B)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*FLAGS, "--window-size=1500,1000"):
        options.add_argument(flag)
    with running(create_app(embedder)) as url:
        driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=CHROMEDRIVER))
        try:
            driver.get(url + "/")
            driver.find_element(By.ID, "go").click()
            WebDriverWait(driver, 60).until(lambda d: d.execute_script("return document.body.dataset.ready === '1'"))
            tables = driver.find_elements(By.CSS_SELECTOR, "table.heat")
            assert len(tables) == embedder.num_layers
            for layer, table in enumerate(tables):
                cells = table.find_elements(By.CSS_SELECTOR, "td")
                got = np.zeros((len(A), len(B)))
                for cell in cells:
                    got[int(cell.get_attribute("data-row")), int(cell.get_attribute("data-col"))] = float(cell.get_attribute("data-value"))
                assert len(cells) == len(A) * len(B)
                np.testing.assert_allclose(got, _cosines(ea[layer], eb[layer]), atol=1e-4)
            # Layer 0 sees the word alone: the two "bank"s are the same vector there.
            assert float(tables[0].find_element(By.CSS_SELECTOR, 'td[data-row="4"][data-col="6"]').get_attribute("data-value")) == pytest.approx(1.0, abs=1e-5)
            driver.save_screenshot(str(tmp_path / "serve_page.png"))
        finally:
            driver.quit()
    assert (tmp_path / "serve_page.png").stat().st_size > 0
