"""The explorer page in a real headless Chromium (system packages, driven by selenium): type a source, submit,
and find the translation, the attention heatmap and the twelve gate/state heatmaps drawn in the page; bad
input shows the server's message; the page loads nothing from anywhere else. Skipped, with the reason, where
no Chromium, chromedriver or selenium is installed (.ci/run installs them)."""
import json
import urllib.parse
import urllib.request

import pytest

from browser import chromium, missing, running, submit
from lstm_np.serve import Explorer, STEP_NAMES

pytestmark = pytest.mark.skipif(missing() is not None, reason=str(missing()))

# heatmap canvas -> [distinct colours, share of unpainted pixels] inside its grid of cells (labels excluded)
CELLS = """
const c = arguments[0], g = c.grid, seen = new Set();
const d = c.getContext("2d").getImageData(g.left, g.top, g.steps * g.cw, g.units * g.rh).data;
let blank = 0;
for (let k = 0; k < d.length; k += 4) { seen.add((d[k] << 16) | (d[k + 1] << 8) | d[k + 2]); blank += d[k + 3] === 0; }
return [seen.size, blank / (d.length / 4)];"""
# any canvas -> number of distinct colours among all its pixels (a blank canvas has 1)
COLOURS = """
const c = arguments[0], d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data, seen = new Set();
for (let k = 0; k < d.length; k += 4) seen.add((d[k] << 16) | (d[k + 1] << 8) | d[k + 2]);
return seen.size;"""


def assert_painted(driver, canvas, what):
    colours, blank = js(driver, CELLS, canvas)
    assert blank == 0, f"{what}: {blank:.0%} of its cells are not painted"
    assert colours > 10, f"{what}: only {colours} colours, not a heatmap of varied values"


@pytest.fixture(scope="module")
def url(dates_checkpoint):
    with running(Explorer.from_checkpoint(dates_checkpoint)) as base:
        yield base


@pytest.fixture(scope="module")
def driver():
    with chromium() as d:
        yield d


def api(url, source, beam=1):
    query = urllib.parse.urlencode({"src": source, "beam": beam})
    with urllib.request.urlopen(f"{url}api/translate?{query}", timeout=60) as response:
        return json.loads(response.read())


def js(driver, script, *args):
    return driver.execute_script(script, *args)


def test_typed_source_shows_the_translation_attention_and_every_heatmap(driver, url):
    source = "April 3, 2021"
    expected = api(url, source)
    driver.get(url)
    assert submit(driver, source) == "done", js(driver, "return document.getElementById('error').textContent")
    assert js(driver, "return document.getElementById('translation').textContent") == expected["translation"]
    assert js(driver, "return document.getElementById('error').hidden")
    m, n1 = len(expected["source_tokens"]), len(expected["target_tokens"])
    attention = driver.find_element("id", "attention")
    assert (attention.get_attribute("data-rows"), attention.get_attribute("data-cols")) == (str(n1), str(m))
    assert_painted(driver, attention, "the attention heatmap")
    for lstm, steps in (("encoder", m), ("decoder", n1)):
        maps = driver.find_elements("css selector", f"#{lstm} canvas.heatmap")
        assert [c.get_attribute("data-quantity") for c in maps] == list(STEP_NAMES)
        for canvas in maps:
            name = canvas.get_attribute("data-quantity")
            assert (canvas.get_attribute("data-steps"), canvas.get_attribute("data-units")) == (str(steps), "16")
            assert canvas.size["width"] > steps and canvas.size["height"] > 16, (lstm, name, canvas.size)
            assert_painted(driver, canvas, f"the {lstm} {name} heatmap")
        assert js(driver, COLOURS, driver.find_element("id", f"{lstm}-unit")) > 5, f"the {lstm} unit chart is blank"


def test_hovering_a_cell_reads_out_its_value_and_clicking_follows_that_unit(driver, url):
    from selenium.webdriver.common.action_chains import ActionChains
    expected = api(url, "3 APR 1999")
    driver.get(url)
    assert submit(driver, "3 APR 1999") == "done"
    canvas = driver.find_element("css selector", "#encoder canvas[data-quantity='f']")
    js(driver, "arguments[0].scrollIntoView({block: 'center'})", canvas)    # (pointer actions do not scroll)
    grid = js(driver, "return arguments[0].grid", canvas)
    # the middle of cell (step 2, unit 5), as an offset from the canvas's centre (selenium's origin)
    x = grid["left"] + 2.5 * grid["cw"] - canvas.size["width"] / 2
    y = grid["top"] + 5.5 * grid["rh"] - canvas.size["height"] / 2
    ActionChains(driver).move_to_element_with_offset(canvas, int(x), int(y)).perform()
    readout = js(driver, "return document.getElementById('readout').textContent")
    value = expected["encoder"]["f"][2][5]
    assert readout.startswith("encoder f_t · step 2 reads") and readout.endswith(f"unit 5 = {value:.4f}"), readout
    ActionChains(driver).move_to_element_with_offset(canvas, int(x), int(y)).click().perform()
    assert js(driver, "return document.getElementById('unit').value") == "5"


def test_beam_width_from_the_page_reaches_the_api(driver, url):
    expected = api(url, "Sat 3 Apr 2021", beam=4)
    driver.get(url)
    assert submit(driver, "Sat 3 Apr 2021", beam=4) == "done"
    assert js(driver, "return document.getElementById('translation').textContent") == expected["translation"]
    assert js(driver, "return document.getElementById('translation-note').textContent").startswith(
        "beam search, width 4")


@pytest.mark.parametrize("source, message", [("été", "unknown character for this model: 'é'"),
                                             ("", "the source is empty"),
                                             ("1" * 201, "the source is too long")])
def test_bad_input_shows_the_servers_message_and_the_page_recovers(driver, url, source, message):
    driver.get(url)
    assert submit(driver, source) == "error"
    error = driver.find_element("id", "error")
    assert error.is_displayed() and message in error.text, error.text
    assert submit(driver, "12/25/1999") == "done"
    assert not error.is_displayed()


def test_page_requests_nothing_but_its_own_server(driver, url):
    driver.get(url)
    assert submit(driver, "the 1st of May 1990") == "done"
    resources = js(driver, "return performance.getEntriesByType('resource').map(e => e.name)")
    assert resources, "the page fetched nothing?"
    outside = [r for r in resources if not r.startswith(url)]
    assert not outside, f"the page reached outside its server: {outside}"
