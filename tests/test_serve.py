"""`lstm-np serve`: the JSON API on a real loopback server (shapes, value ranges, the library's own values),
every kind of bad request answered with a 4xx JSON error, a server that outlives failures, the command line,
and the page's files shipped in the package."""
import argparse
import configparser
import fnmatch
import json
import re
import signal
import socket
import threading
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from browser import running
from lstm_np.cli import build_parser
from lstm_np.data import EOS, tokenize
from lstm_np.serve import MAX_BEAM, STEP_NAMES, Explorer

from helpers import cli, one_line_error, start

ROOT = Path(__file__).resolve().parent.parent
STATIC = ROOT / "lstm_np" / "static"
SOURCES = ["April 3, 2021", "3 APR 1999", "Sat 3 Apr 2021", "12/25/1999", "the 1st of May 1990"]
ROUNDING = 0.5e-6 * (1 + 1e-9)          # the API rounds values to 6 decimals: at most half of 1e-6 off (a value
                                        # exactly half-way, -1.8984375, is off by that plus the float error)


@pytest.fixture(scope="module")
def explorer(dates_checkpoint):
    return Explorer.from_checkpoint(dates_checkpoint)


@pytest.fixture(scope="module")
def url(explorer):
    with running(explorer) as base:
        yield base


def get(url, path, method="GET", headers=None):
    """(status, headers, body as JSON when it is JSON, else bytes) of one request."""
    request = urllib.request.Request(url.rstrip("/") + path, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            status, head, body = response.status, response.headers, response.read()
    except urllib.error.HTTPError as e:
        status, head, body = e.code, e.headers, e.read()
    if head.get("Content-Type", "").startswith("application/json"):
        body = json.loads(body.decode("utf-8"))
    return status, head, body


def translate(url, **params):
    status, _, body = get(url, "/api/translate?" + urllib.parse.urlencode(params))
    assert status == 200, body
    return body


# ----------------------------------------------------------------------------------------------- the API
def test_model_endpoint_describes_the_checkpoint(url, explorer):
    status, head, info = get(url, "/api/model")
    assert status == 200 and head["Cache-Control"] == "no-store"
    assert info["name"] == "run" and info["task"] == "dates"
    assert info["model"]["hidden_size"] == 16 and info["model"]["attention"] == "luong"
    assert info["layers"] == 1 and info["directions"] == ["fwd"]
    assert info["encoder_units"] == info["decoder_units"] == 16
    assert info["source_vocab"]["size"] == len(explorer.src_vocab)
    assert set(info["example"]) <= set(info["source_vocab"]["symbols"])
    assert info["limits"] == {"max_source_len": 200, "max_beam": MAX_BEAM}
    assert info["defaults"] == {"beam": 1, "layer": 0, "direction": "fwd"}


@pytest.mark.parametrize("beam", [1, 3])
@pytest.mark.parametrize("source", SOURCES)
def test_translate_answers_with_the_documented_shapes_and_value_ranges(url, explorer, source, beam):
    r = translate(url, src=source, beam=beam)
    m, n1, H = len(tokenize(source)) + 1, len(r["target_tokens"]), 16
    assert r["source"] == source and r["beam"] == beam
    assert r["source_tokens"] == list(source) + ["<eos>"]
    assert r["target_tokens"][-1] == "<eos>" and not r["truncated"]
    assert r["translation"] == "".join(r["target_tokens"][:-1])
    attention = np.array(r["attention"])
    assert attention.shape == (n1, m)                       # (len(target) + 1) x len(source + EOS)
    assert np.all(attention >= 0) and np.allclose(attention.sum(axis=1), 1, atol=m * ROUNDING)
    enc, dec = r["encoder"], r["decoder"]
    assert enc["layer"] == 0 and enc["direction"] == "fwd" and dec["layer"] == 0
    assert sorted(enc["positions"]) == list(range(m))
    assert enc["positions"] == list(range(m))[::-1], "this model reads its source reversed"
    assert enc["tokens"] == [r["source_tokens"][p] for p in enc["positions"]]
    assert dec["inputs"] == ["<bos>"] + r["target_tokens"][:-1] and dec["outputs"] == r["target_tokens"]
    for part, steps in ((enc, m), (dec, n1)):
        v = {name: np.array(part[name]) for name in STEP_NAMES}
        for name in STEP_NAMES:
            assert v[name].shape == (steps, H), (name, v[name].shape)
        for name in ("i", "f", "o"):
            assert v[name].min() >= 0 and v[name].max() <= 1, name
        for name in ("c_tilde", "h"):
            assert v[name].min() >= -1 and v[name].max() <= 1, name
        # the six arrays belong together step by step: h_t = o_t ⊙ tanh(c_t)
        np.testing.assert_allclose(v["h"], v["o"] * np.tanh(v["c"]), rtol=0, atol=4 * ROUNDING)


@pytest.mark.parametrize("beam", [1, 3])
def test_translate_reports_the_librarys_own_translation_and_values(url, explorer, beam):
    """The answer is `Seq2Seq.translate` and `Seq2Seq.trace` of the loaded model, rounded to 6 decimals."""
    model, vocab = explorer.model, explorer.src_vocab
    for source in SOURCES:
        r = translate(url, src=source, beam=beam)
        src = np.array([vocab.encode(source) + [EOS]])
        outputs = model.translate(src, max_len=50, beam_size=beam)
        assert not r["truncated"] and len(outputs[0]) < 50
        assert r["translation"] == explorer.tgt_vocab.decode(outputs[0])
        tr = model.trace(src, outputs)[0]
        f64 = lambda a: np.asarray(a, np.float64)   # compared in float64: in float32, |x| near 8 is off by 4.8e-7 more
        np.testing.assert_allclose(r["attention"], f64(tr["attention"]), rtol=0, atol=ROUNDING)
        for name in STEP_NAMES:
            np.testing.assert_allclose(r["encoder"][name], f64(tr["encoder"][0][0][name]), rtol=0, atol=ROUNDING)
            np.testing.assert_allclose(r["decoder"][name], f64(tr["decoder"][0][name]), rtol=0, atol=ROUNDING)


def test_concurrent_requests_each_get_their_own_answer(url):
    """Requests run in threads over one model, whose modules hold each forward's values: the lock must keep
    every answer equal to the same request made alone."""
    alone = {s: translate(url, src=s, beam=2) for s in SOURCES}
    answers, errors = {}, []

    def ask(k):
        try:
            answers[k] = translate(url, src=SOURCES[k % len(SOURCES)], beam=2)
        except Exception as e:                          # reported below, with the others
            errors.append(e)

    threads = [threading.Thread(target=ask, args=(k,)) for k in range(4 * len(SOURCES))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for k, answer in answers.items():
        assert answer == alone[SOURCES[k % len(SOURCES)]], f"request {k} got another request's values"


# ----------------------------------------------------------------------------------------------- errors
BAD_QUERIES = {
    "no_source": ("", "missing parameter 'src'"),
    "empty_source": ("src=", "empty"),
    "blank_source": ("src=%20%20", "empty"),
    "too_long": ("src=" + "1" * 201, "too long: 201 characters"),
    "unknown_characters": ("src=%C3%A9t%C3%A9%20%E2%82%AC", "unknown characters for this model: 'é', '€'"),
    "beam_zero": ("src=1999&beam=0", "beam must be an integer in [1, 16]"),
    "beam_too_wide": ("src=1999&beam=17", "beam must be an integer in [1, 16]"),
    "beam_not_a_number": ("src=1999&beam=two", "beam must be an integer"),
    "layer_out_of_range": ("src=1999&layer=1", "layer must be an integer in [0, 0]"),
    "reverse_direction_of_a_one_way_encoder": ("src=1999&direction=bwd", "direction must be 'fwd'"),
    "unknown_parameter": ("src=1999&colour=red", "unknown parameter 'colour'"),
    "repeated_parameter": ("src=1999&src=2000", "'src' is given 2 times"),
    "not_utf8": ("src=%ff", "not valid UTF-8"),
    "too_many_parameters": ("&".join(["src=1"] * 9), "too many query parameters"),
}


@pytest.mark.parametrize("case", sorted(BAD_QUERIES))
def test_bad_query_gets_400_with_a_json_message_naming_the_problem(url, case):
    query, needle = BAD_QUERIES[case]
    status, head, body = get(url, "/api/translate?" + query)
    assert status == 400, (status, body)
    assert head["Content-Type"] == "application/json; charset=utf-8"
    assert needle in body["error"], body
    if case == "unknown_characters":
        assert body["unknown"] == ["é", "€"]


def test_wrong_path_method_and_host_get_json_errors(url):
    status, _, body = get(url, "/api/nothing")
    assert status == 404 and "no such page: /api/nothing" in body["error"]
    status, _, body = get(url, "/static/../serve.py")
    assert status == 404
    status, head, body = get(url, "/api/model", method="POST")
    assert status == 405 and head["Allow"] == "GET, HEAD" and "GET only" in body["error"]
    status, _, body = get(url, "/api/model", method="BREW")
    assert status == 501 and body["error"]
    status, _, body = get(url, "/api/model", headers={"Host": "attacker.example:80"})
    assert status == 403 and "localhost" in body["error"]
    status, _, body = get(url, "/api/translate?src=" + "1" * 70000)   # refused by http.server itself
    assert status == 414 and body["error"]


def test_a_failure_inside_a_request_is_a_500_json_error_and_the_server_goes_on(url, explorer, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(explorer.model, "trace", broken)
    status, _, body = get(url, "/api/translate?src=1999")
    assert status == 500 and "RuntimeError: boom" in body["error"]
    monkeypatch.undo()
    assert translate(url, src="1999")["translation"]


def test_server_answers_after_every_bad_request(url):
    for query, _ in BAD_QUERIES.values():
        get(url, "/api/translate?" + query)
    assert get(url, "/api/model")[0] == 200
    assert translate(url, src="April 3, 2021")["translation"]


def test_ipv6_loopback_is_served_and_counts_as_loopback(explorer):
    try:
        with running(explorer, "::1") as base:
            assert get(base, "/api/model")[0] == 200
            assert get(base, "/api/model", headers={"Host": "attacker.example"})[0] == 403
    except ValueError as e:
        pytest.skip(f"no IPv6 loopback on this machine: {e}")


# ----------------------------------------------------------------------------------------------- the page
def test_page_and_its_files_are_served_with_their_types_and_a_strict_content_policy(url):
    status, head, body = get(url, "/")
    assert status == 200 and head["Content-Type"] == "text/html; charset=utf-8"
    assert "default-src 'none'" in head["Content-Security-Policy"]
    assert body == (STATIC / "index.html").read_bytes()
    for name, kind in (("explorer.js", "text/javascript"), ("explorer.css", "text/css")):
        status, head, body = get(url, "/static/" + name)
        assert status == 200 and head["Content-Type"].startswith(kind)
        assert body == (STATIC / name).read_bytes()
    status, head, body = get(url, "/", method="HEAD")
    assert status == 200 and body == b"" and int(head["Content-Length"]) == len((STATIC / "index.html").read_bytes())


def test_static_files_load_nothing_from_elsewhere():
    """No CDN, no web font, no absolute URL: the page works offline, from this server alone."""
    for path in STATIC.iterdir():
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"(?i)\b(?:https?:)?//[a-z0-9-]+(?:\.[a-z0-9-]+)+", text), f"{path.name} names a host"
        assert "@import" not in text and "@font-face" not in text, path.name
        for ref in re.findall(r"""(?:src|href)="([^"]*)\"""", text):
            assert ref.startswith("/static/") or ref == "data:,", f"{path.name} loads {ref!r}"
        for ref in re.findall(r"""fetch\(\s*["']([^"']*)""", text):
            assert ref.startswith("/api/"), f"{path.name} fetches {ref!r}"


def test_setup_cfg_ships_every_static_file_as_package_data():
    """A non-editable install has the page only if setup.cfg's package_data patterns match its files."""
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    patterns = [p.strip() for p in cfg["options.package_data"]["lstm_np"].split(",")]
    files = sorted(p.relative_to(ROOT / "lstm_np").as_posix() for p in STATIC.iterdir())
    assert files, "lstm_np/static is empty"
    unshipped = [f for f in files if not any(fnmatch.fnmatch(f, p) for p in patterns)]
    assert not unshipped, f"not in setup.cfg [options.package_data]: {unshipped}"


# ----------------------------------------------------------------------------------------------- the command
def test_serve_command_prints_its_address_answers_and_stops_on_ctrl_c(dates_checkpoint, tmp_path):
    proc = start(["serve", "--checkpoint", dates_checkpoint, "--port", 0], tmp_path)
    try:
        line = proc.stdout.readline()
        match = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        assert match, f"no address in {line!r}; stderr: {proc.stderr.read() if proc.poll() is not None else ''}"
        base = match.group(0)
        assert get(base, "/api/model")[2]["name"] == "run"
        assert translate(base, src="April 3, 2021")["source_tokens"][-1] == "<eos>"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "stopped" in out and "Traceback" not in err


def test_serve_refuses_a_missing_or_broken_checkpoint_in_one_line(dates_checkpoint, tmp_path):
    one_line_error(cli(["serve", "--checkpoint", tmp_path / "nowhere"], tmp_path), "nowhere", "no such")
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("config.json", "src_vocab.json", "tgt_vocab.json", "checkpoint.json"):
        (broken / name).write_bytes((dates_checkpoint / name).read_bytes())
    (broken / "config.json").write_text("{not json", encoding="utf-8")
    one_line_error(cli(["serve", "--checkpoint", broken], tmp_path), "config.json", "JSON")


def test_serve_on_a_port_in_use_is_a_one_line_error(dates_checkpoint, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = cli(["serve", "--checkpoint", dates_checkpoint, "--port", port], tmp_path)
    one_line_error(result, f"cannot listen on 127.0.0.1:{port}")


def test_serve_flags_have_help_and_checked_values(tmp_path):
    parser = build_parser()
    serve = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices["serve"]
    flags = {a.option_strings[0]: a.help for a in serve._actions if a.option_strings and a.dest != "help"}
    assert set(flags) == {"--checkpoint", "--host", "--port", "--max-source-len", "--threads"}
    assert all(flags.values()), f"flags without help: {[f for f, h in flags.items() if not h]}"
    one_line_error(cli(["serve", "--checkpoint", "x", "--port", "70000"], tmp_path), "--port", "65535")
