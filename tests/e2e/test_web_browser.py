"""End to end in a real headless Chromium (Debian's `chromium` + `chromium-driver`, driven by
Selenium): pick a catalog model, an Apple device, the MLC engine in interactive mode; see 32,768
and the Metal cap named; switch to a CUDA device and see more; screenshots go to test-artifacts/.

Without Chromium the test is skipped with the reason, except under CI (CI=true), where it
fails: .ci/run installs Chromium, so a missing one there is a broken setup, not a pass.
"""

from __future__ import annotations

import os
import re
import shutil
import threading
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from kvcap.web.server import make_server

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
WAIT = 90  # seconds for any one thing to appear on the page


def _need(reason: str):
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"CI must run the browser test: {reason} (.ci/run installs chromium and chromium-driver)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser():
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_bin = shutil.which("chromedriver")
    if not chromium or not driver_bin:
        _need("Chromium and chromedriver are not installed (apt-get install chromium chromium-driver)")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        _need("selenium is not installed (pip install -e '.[test]')")
    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager must not look for drivers online
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1400,2000", "--lang=en-US"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(driver_bin), options=opts)
    driver.set_page_load_timeout(WAIT)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def site():
    srv = make_server("127.0.0.1", 0, quiet=True)
    t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    t.start()
    yield srv.url
    srv.shutdown()
    srv.server_close()
    t.join(10)


def _type(driver, element_id: str, text: str) -> None:
    from selenium.webdriver.common.keys import Keys
    el = driver.find_element("id", element_id)
    el.clear()
    el.send_keys(text)
    el.send_keys(Keys.TAB)   # leaving the field fires `change`, which replans


def _tokens(driver) -> int | None:
    text = driver.find_element("id", "kv-tokens").text
    return int(text.replace(",", "")) if re.fullmatch(r"[\d,]+", text) else None


def _chart_state(driver) -> str | None:
    """The query whose chart is shown, once its image has loaded (app.js sets data-state)."""
    return driver.execute_script("const i = document.getElementById('chart'); "
                                 "return i.complete && i.naturalWidth > 0 && !i.hidden ? i.dataset.state : null")


def _shot(driver, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    driver.save_screenshot(str(path))
    assert path.stat().st_size > 10_000
    return path


def test_mlc_on_a_mac_hits_the_metal_cap_and_cuda_gets_more(browser, site):
    from selenium.webdriver.support.ui import Select, WebDriverWait
    wait = WebDriverWait(browser, WAIT)
    browser.get(site)
    wait.until(lambda d: len(Select(d.find_element("id", "engine")).options) >= 2)

    _type(browser, "model", "llama3_1_8b")
    _type(browser, "device", "m2-max-64gb")
    Select(browser.find_element("id", "engine")).select_by_value("mlc")
    browser.find_element("id", "add-option").click()
    row = browser.find_elements("css selector", "#options .option")[-1]
    from selenium.webdriver.common.keys import Keys
    row.find_element("class name", "opt-name").send_keys("mode", Keys.TAB)
    row.find_element("class name", "opt-value").send_keys("interactive", Keys.TAB)

    wait.until(lambda d: "o.mode=interactive" in d.current_url and _tokens(d) == 32768)
    assert browser.find_element("id", "kv-tokens").text == "32,768"
    binding = browser.find_element("id", "binding").text
    assert "device_cap" in binding and "Metal" in binding
    state = parse_qs(urlsplit(browser.current_url).query)
    assert state == {"model": ["llama3_1_8b"], "device": ["m2-max-64gb"], "engine": ["mlc"], "o.mode": ["interactive"]}
    # The side-by-side table and the chart arrive from their own endpoints.
    wait.until(lambda d: len(d.find_elements("css selector", "#compare tr")) > 2)
    wait.until(lambda d: _chart_state(d) == urlsplit(d.current_url).query)
    assert "mlc_llm serve" in browser.find_element("id", "launch").text
    assert not browser.find_element("id", "error").is_displayed()
    _shot(browser, "web-mlc-m2-max-64gb.png")

    _type(browser, "device", "h100-sxm")
    wait.until(lambda d: "device=h100-sxm" in d.current_url and (_tokens(d) or 0) > 32768)
    assert "device_cap" not in browser.find_element("id", "binding").text
    cuda_tokens = _tokens(browser)
    wait.until(lambda d: _chart_state(d) == urlsplit(d.current_url).query)
    assert "NVIDIA H100" in browser.find_element("id", "device-info").text
    _shot(browser, "web-mlc-h100-sxm.png")

    # The state lives in the URL: loading it afresh shows the same plan.
    url = browser.current_url
    browser.get("about:blank")
    browser.get(url)
    wait.until(lambda d: _tokens(d) == cuda_tokens)
    assert browser.find_element("id", "device").get_attribute("value") == "h100-sxm"


def test_bad_name_shows_the_one_line_error(browser, site):
    from selenium.webdriver.support.ui import WebDriverWait
    browser.get(site + "?model=no-such-model-xyz&device=h100-sxm&engine=mlc")
    WebDriverWait(browser, WAIT).until(lambda d: d.find_element("id", "error").is_displayed())
    text = browser.find_element("id", "error").text
    assert "unknown model 'no-such-model-xyz'" in text and "\n" not in text
    assert browser.find_element("id", "kv-tokens").text == "—"
    browser.get(site + "?model=../../etc/passwd&device=h100-sxm")
    WebDriverWait(browser, WAIT).until(lambda d: "path" in d.find_element("id", "error").text)
    _shot(browser, "web-error.png")


def test_upload_config_then_its_safetensors_header(browser, site, tmp_path):
    import json
    import sys
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from test_reader_files import tiny_llama, tiny_llama_tensors, write_safetensors
    from selenium.webdriver.support.ui import WebDriverWait
    wait = WebDriverWait(browser, WAIT)
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps(tiny_llama(_name_or_path="org/tiny-llama")))
    st = tmp_path / "model.safetensors"
    size = write_safetensors(st, tiny_llama_tensors("F16"))
    browser.get(site + "?device=rtx-4090&engine=llamacpp")
    wait.until(lambda d: d.find_element("id", "engine").get_attribute("value") == "llamacpp")
    browser.find_element("id", "upload").send_keys(str(cfg))
    wait.until(lambda d: d.find_element("id", "model").get_attribute("value").startswith("upload:")
               and (_tokens(d) or 0) > 0)
    assert "org/tiny-llama" in browser.find_element("id", "model-info").text
    browser.find_element("id", "upload").send_keys(str(st))
    # The header's F16 bytes replace the config's estimate: the page shows them as stored bytes.
    wait.until(lambda d: "stored" in d.find_element("id", "model-info").text)
    assert f"({size:,} B)" in browser.find_element("id", "model-info").text
    assert not browser.find_element("id", "error").is_displayed()


def test_oversized_upload_shows_the_error(browser, site, tmp_path):
    from selenium.webdriver.support.ui import WebDriverWait
    big = tmp_path / "config.json"
    big.write_bytes(b" " * (17 << 20))
    browser.get(site)
    browser.find_element("id", "upload").send_keys(str(big))
    WebDriverWait(browser, WAIT).until(lambda d: d.find_element("id", "error").is_displayed())
    assert "above the limit" in browser.find_element("id", "error").text
