"""Headless Chromium from the system packages (Debian: apt-get install chromium chromium-driver), driven by
selenium, for the explorer page's tests and for docs/screenshot.py.

selenium is pointed at /usr/bin/chromedriver explicitly, so Selenium Manager never runs (it would try to
download a driver); the flags keep Chromium from reaching anything but the page under test.
"""
import contextlib
import os
import shutil
import tempfile
import threading

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--hide-scrollbars", "--force-device-scale-factor=1")


def missing():
    """None if a headless browser can run here, else the reason it cannot (for pytest.skip)."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return 'selenium is not installed (pip install -e ".[test]")'
    if not any(shutil.which(name) for name in CHROMIUM_NAMES):
        return "no Chromium installed (Debian: apt-get install chromium chromium-driver)"
    if not shutil.which("chromedriver"):
        return "no chromedriver installed (Debian: apt-get install chromium-driver)"
    return None


@contextlib.contextmanager
def chromium(width=1280, height=900):
    """A selenium WebDriver on a fresh headless Chromium profile, quit and removed on exit."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    profile = tempfile.mkdtemp(prefix="lstm-np-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = next(shutil.which(n) for n in CHROMIUM_NAMES if shutil.which(n))
    for flag in FLAGS + (f"--user-data-dir={profile}", f"--window-size={width},{height}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=shutil.which("chromedriver"), log_output=os.devnull),
                              options=options)
    try:
        driver.set_page_load_timeout(30)
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@contextlib.contextmanager
def running(explorer, host="127.0.0.1"):
    """The explorer served on a free port of `host` in a background thread: yields its base URL."""
    from lstm_np.serve import make_server
    server = make_server(explorer, host, 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{f'[{host}]' if ':' in host else host}:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def submit(driver, source, beam=1, timeout=60):
    """Type `source` into the page, set the beam width, submit, and wait until the page shows a result or
    an error; returns the page's state ("done" or "error")."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
    wait = WebDriverWait(driver, timeout)
    wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-state") in ("ready", "done", "error"))
    box = driver.find_element(By.ID, "src")
    box.clear()
    box.send_keys(source)
    beam_box = driver.find_element(By.ID, "beam")
    beam_box.clear()
    beam_box.send_keys(str(beam))
    driver.execute_script("document.body.dataset.state = 'submitted'")
    driver.find_element(By.ID, "submit").click()
    wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-state") in ("done", "error"))
    return driver.find_element(By.TAG_NAME, "body").get_attribute("data-state")
