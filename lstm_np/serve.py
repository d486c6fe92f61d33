"""The explorer: a local web page showing what a trained model computes for a source you type (the
translation, the attention and every step's gates and states), and the JSON API the page reads.

    lstm-np serve --checkpoint DIR [--host 127.0.0.1] [--port 8000]

    GET /                     the page: lstm_np/static/index.html, explorer.js, explorer.css (shipped in the
                              package; no CDN, no web fonts: it works offline)
    GET /api/model            the checkpoint: model configuration, vocabularies, limits, defaults
    GET /api/translate?src=TEXT[&beam=K][&layer=L][&direction=fwd|bwd]
                              the translation, the attention and one encoder and one decoder layer's
                              per-step i, f, o, c~, c, h (`Seq2Seq.trace`, the library's own forward pass)

The shapes, with m the source's tokens plus EOS, n the translation's tokens and H the units per layer:

    source_tokens (m,)   target_tokens (n + 1,): the output, then "<eos>" ("…" if cut at the output limit)
    attention (n + 1, m) or null without attention: row t is decoder step t's weights over the source
    encoder: positions, tokens (m,); i, f, o, c_tilde, c, h (m, H)       step t read source position positions[t]
    decoder: inputs, outputs (n + 1,); i, f, o, c_tilde, c, h (n + 1, Hd)  step t reads inputs[t], emits outputs[t]

Bad requests get a 4xx status and {"error": "a sentence saying what is wrong"}; a failure inside the server
gets 500 with the same shape, and the server goes on serving.

The server is the standard library's ThreadingHTTPServer: a page, two GET endpoints and three static files
need no framework, and so `lstm-np serve` needs nothing beyond the runtime dependencies (numpy, sacrebleu,
threadpoolctl). It is meant for one person's machine, not for the internet: it listens on loopback unless
--host says otherwise, and serves nothing but its own static files and the API. Requests are handled in
threads, but the model keeps each forward's values in its modules, so one lock lets one translation run at
a time.
"""
import json
import socket
import sys
import threading
import traceback
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from urllib.parse import parse_qs, urlsplit

import numpy as np

from . import tasks as task_lib
from .data import EOS, SPECIALS, tokenize
from .run_folder import load_model, output_limit, trained_max_len

DEFAULT_MAX_SOURCE_LEN = 200     # tokens a source may have (the EOS the encoder reads after them not counted)
MAX_BEAM = 16                    # widest beam the API accepts
DECIMALS = 6                     # values in the JSON are rounded to this many decimals
STEP_NAMES = ("i", "f", "o", "c_tilde", "c", "h")
DIRECTIONS = ("fwd", "bwd")
LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})
PARAMETERS = ("src", "beam", "layer", "direction")
STATIC_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                ".css": "text/css; charset=utf-8"}
PAGE_POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
               "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


class RequestError(Exception):
    """A request the API refuses: the HTTP status and a message for the person who sent it."""

    def __init__(self, status, message, **extra):
        super().__init__(message)
        self.status, self.extra = status, extra


def rounded(a):
    """An array as nested lists of floats with DECIMALS decimals (JSON has no float32)."""
    return np.round(np.asarray(a, dtype=np.float64), DECIMALS).tolist()


class Explorer:
    """A loaded model and what the API answers about it, independent of HTTP (tests and scripts call it too)."""

    def __init__(self, model, src_vocab, tgt_vocab, saved_config, name="model", trained_max_len=None,
                 max_source_len=DEFAULT_MAX_SOURCE_LEN):
        self.model = model.eval()
        self.src_vocab, self.tgt_vocab = src_vocab, tgt_vocab
        self.saved_config = saved_config
        self.name = name
        self.trained_max_len = trained_max_len
        self.max_source_len = max_source_len
        self.lock = threading.Lock()

    @classmethod
    def from_checkpoint(cls, path, max_source_len=DEFAULT_MAX_SOURCE_LEN):
        """The checkpoint's best weights (as `lstm-np translate` loads them); CheckpointError if unusable."""
        model, src_vocab, tgt_vocab, saved = load_model(path, which="best")
        name = str(path).rstrip("/\\").replace("\\", "/").rsplit("/", 1)[-1] or str(path)
        return cls(model, src_vocab, tgt_vocab, saved, name, trained_max_len(path), max_source_len)

    # ----------------------------------------------------------------------------------------------
    def model_info(self):
        """What GET /api/model returns."""
        cfg, enc = self.model.config, self.model.encoder.lstm
        train = self.saved_config.get("train") if isinstance(self.saved_config.get("train"), dict) else {}
        task = train.get("task")
        example = task_lib.example(task)[0] if task in task_lib.TASKS else None
        return {"name": self.name, "task": task, "example": example,
                "model": {k: (v if isinstance(v, (str, int, float, bool, type(None))) else str(v))
                          for k, v in cfg.items()},
                "layers": enc.num_layers, "directions": list(DIRECTIONS[:enc.num_directions]),
                "encoder_units": enc.hidden_size, "decoder_units": self.model.decoder.lstm.hidden_size,
                "source_vocab": self._vocab_info(self.src_vocab), "target_vocab": self._vocab_info(self.tgt_vocab),
                "limits": {"max_source_len": self.max_source_len, "max_beam": MAX_BEAM},
                "defaults": {"beam": 1, "layer": enc.num_layers - 1, "direction": "fwd"}}

    @staticmethod
    def _vocab_info(vocab):
        info = {"tokens": vocab.tokens, "lower": vocab.lower, "size": len(vocab)}
        if vocab.tokens == "char":
            info["symbols"] = "".join(vocab.id_to_token[len(SPECIALS):])
        return info

    # ----------------------------------------------------------------------------------------------
    def translate(self, query):
        """What GET /api/translate returns for `query` ({name: [values]} as parse_qs gives it); RequestError
        for a query it cannot answer."""
        args = self._parse(query)
        tokens, ids = self._source(args["src"])
        model = self.model
        max_len = output_limit(len(ids), self.trained_max_len)       # the output limit `lstm-np translate` uses
        src = np.array([ids + [EOS]])                                  # (1, m): the source, then EOS
        with self.lock:
            outputs = model.translate(src, max_len=max_len, beam_size=args["beam"])
            trace = model.trace(src, outputs)[0]
        out = outputs[0]
        truncated = len(out) == max_len                                # cut at max_len: no EOS was emitted
        itos = self.tgt_vocab.id_to_token
        target_tokens = [itos[i] for i in out] + ["<eos>" if not truncated else "…"]
        source_tokens = tokens + ["<eos>"]
        enc = trace["encoder"][args["layer"]][DIRECTIONS.index(args["direction"])]
        dec = trace["decoder"][args["layer"]]
        return {
            "source": args["src"], "source_tokens": source_tokens, "beam": args["beam"],
            "translation": self.tgt_vocab.decode(out), "target_tokens": target_tokens, "truncated": truncated,
            "attention": None if trace["attention"] is None else rounded(trace["attention"]),
            "encoder": {"layer": args["layer"], "direction": args["direction"],
                        "positions": enc["positions"].tolist(),
                        "tokens": [source_tokens[p] for p in enc["positions"]],
                        **{name: rounded(enc[name]) for name in STEP_NAMES}},
            "decoder": {"layer": args["layer"], "inputs": ["<bos>"] + target_tokens[:-1], "outputs": target_tokens,
                        **{name: rounded(dec[name]) for name in STEP_NAMES}},
        }

    def _parse(self, query):
        unknown = sorted(set(query) - set(PARAMETERS))
        if unknown:
            raise RequestError(400, f"unknown parameter {unknown[0]!r} (known: {', '.join(PARAMETERS)})")
        for name, values in query.items():
            if len(values) > 1:
                raise RequestError(400, f"parameter {name!r} is given {len(values)} times; give it once")
        if "src" not in query:
            raise RequestError(400, "missing parameter 'src': the source text to translate")
        L, nd = self.model.encoder.lstm.num_layers, self.model.encoder.lstm.num_directions
        args = {"src": query["src"][0],
                "beam": self._int(query, "beam", 1, 1, MAX_BEAM),
                "layer": self._int(query, "layer", L - 1, 0, L - 1),
                "direction": query.get("direction", ["fwd"])[0]}
        if args["direction"] not in DIRECTIONS[:nd]:
            raise RequestError(400, f"direction must be {' or '.join(map(repr, DIRECTIONS[:nd]))} for this model's "
                                    f"{'bidirectional' if nd == 2 else 'one-directional'} encoder, "
                                    f"got {args['direction']!r}")
        return args

    @staticmethod
    def _int(query, name, default, low, high):
        if name not in query:
            return default
        text = query[name][0]
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or not low <= value <= high:
            raise RequestError(400, f"{name} must be an integer in [{low}, {high}], got {text!r}")
        return value

    def _source(self, text):
        """(tokens, ids) of a source text; RequestError if it is empty, too long or has unknown tokens."""
        vocab = self.src_vocab
        tokens = tokenize(text, vocab.tokens, vocab.lower)
        if not text.strip() or not tokens:
            raise RequestError(400, "the source is empty: type something to translate")
        if len(tokens) > self.max_source_len:
            raise RequestError(400, f"the source is too long: {len(tokens)} {self._unit(vocab)}s, this server "
                                    f"accepts at most {self.max_source_len} (lstm-np serve --max-source-len)")
        unknown = list(dict.fromkeys(t for t in tokens if t not in vocab.token_to_id))
        if unknown:
            shown = ", ".join(repr(t) for t in unknown[:10]) + (", …" if len(unknown) > 10 else "")
            raise RequestError(400, f"unknown {self._unit(vocab)}{'s' if len(unknown) > 1 else ''} for this model: "
                                    f"{shown}", unknown=unknown)
        return tokens, [vocab.token_to_id[t] for t in tokens]

    @staticmethod
    def _unit(vocab):
        return "character" if vocab.tokens == "char" else "word"


# --------------------------------------------------------------------------------------------------
# HTTP
def static_files():
    """{url path: (content type, bytes)} of the page's files, read once from the installed package."""
    folder = resources.files("lstm_np") / "static"
    files = {}
    for entry in folder.iterdir():
        kind = next((t for ext, t in STATIC_TYPES.items() if entry.name.endswith(ext)), None)
        if kind is not None and entry.is_file():
            files["/static/" + entry.name] = (kind, entry.read_bytes())
    if "/static/index.html" not in files:
        raise ValueError(f"{folder}: the explorer page is missing from this installation of lstm_np")
    files["/"] = files["/static/index.html"]
    return files


class Handler(BaseHTTPRequestHandler):
    """GET and HEAD only; every answer that is not a static file is JSON, errors included."""

    server_version = "lstm-np-serve"
    explorer = None         # set on the subclass `make_server` builds
    files = None
    allowed_hosts = None    # on loopback: the names a request may be addressed to (None: any)

    def do_GET(self):
        self._respond(head=False)

    def do_HEAD(self):
        self._respond(head=True)

    def _refuse_method(self):
        self._send_json(405, {"error": f"method {self.command} is not allowed: this server answers GET only"},
                        extra_headers={"Allow": "GET, HEAD"})

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _refuse_method

    def _respond(self, head):
        try:
            url = urlsplit(self.path)
            host = urlsplit("//" + self.headers.get("Host", "")).hostname
            if self.allowed_hosts is not None and host not in self.allowed_hosts:
                # a page elsewhere that re-points its own name at 127.0.0.1 (DNS rebinding) gets nothing
                raise RequestError(403, "this server answers requests addressed to localhost or 127.0.0.1 only "
                                        "(it listens on loopback)")
            if url.path in self.files:
                kind, body = self.files[url.path]
                headers = {"Content-Security-Policy": PAGE_POLICY} if kind.startswith("text/html") else {}
                return self._send(200, kind, body, head, headers)
            if url.path == "/api/model":
                return self._send_json(200, self.explorer.model_info(), head=head)
            if url.path == "/api/translate":
                try:
                    query = parse_qs(url.query, keep_blank_values=True, strict_parsing=False,
                                     max_num_fields=2 * len(PARAMETERS), errors="strict")
                except UnicodeDecodeError:
                    raise RequestError(400, "the query is not valid UTF-8 (percent-encode the text as UTF-8)")
                except ValueError:
                    raise RequestError(400, f"too many query parameters (known: {', '.join(PARAMETERS)})")
                return self._send_json(200, self.explorer.translate(query), head=head)
            raise RequestError(404, f"no such page: {url.path} (the API is /api/model and /api/translate)")
        except RequestError as e:
            self._send_json(e.status, {"error": str(e), **e.extra}, head=head)
        except (BrokenPipeError, ConnectionResetError):
            pass                                      # the client went away: nothing to answer
        except Exception as e:                        # never let one request take the server down
            self.log_error("internal error on %s:\n%s", self.path, traceback.format_exc())
            self._send_json(500, {"error": f"internal error ({type(e).__name__}: {e}); the server goes on"},
                            head=head)

    def _send_json(self, status, obj, head=False, extra_headers=None):
        body = json.dumps(obj, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode("utf-8")
        self._send(status, "application/json; charset=utf-8", body, head,
                   {"Cache-Control": "no-store", **(extra_headers or {})})

    def _send(self, status, kind, body, head, headers):
        try:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("X-Content-Type-Options", "nosniff")
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            if not head:
                self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def send_error(self, code, message=None, explain=None):
        """Errors the standard library raises itself (malformed request line, unknown method, URL too long),
        as JSON like every other answer."""
        self.close_connection = True
        text = message or HTTPStatus(code).phrase
        self._send_json(code, {"error": text}, head=self.command == "HEAD")


class ExplorerServer(ThreadingHTTPServer):
    daemon_threads = True       # a request still running does not hold up Ctrl-C
    request_queue_size = 64     # connections waiting to be accepted (the standard library's 5 is easily reached
                                # by a page and a script asking at once)


def make_server(explorer, host="127.0.0.1", port=8000):
    """A ThreadingHTTPServer for `explorer` listening on (host, port) (port 0: a free port, see
    server.server_address); ValueError saying why if it cannot listen there."""
    handler = type("ExplorerHandler", (Handler,), {"explorer": explorer, "files": static_files(),
                                                   "allowed_hosts": LOOPBACK if host in LOOPBACK else None})
    try:
        server_class = ExplorerServer
        if ":" in host:                                  # an IPv6 address such as ::1
            server_class = type("ExplorerServer6", (ExplorerServer,), {"address_family": socket.AF_INET6})
        return server_class((host, port), handler)
    except OSError as e:
        raise ValueError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None


def serve(explorer, host="127.0.0.1", port=8000, out=sys.stdout):
    """Serve until Ctrl-C (exit status 0)."""
    server = make_server(explorer, host, port)
    host, port = server.server_address[:2]
    shown = f"[{host}]" if ":" in host else host
    print(f"lstm-np serve: {explorer.name} on http://{shown}:{port}/  (Ctrl-C stops)", file=out, flush=True)
    if host not in LOOPBACK:
        print(f"lstm-np serve: warning: listening on {host}, not loopback: other machines can reach this page",
              file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("lstm-np serve: stopped", file=out, flush=True)
    finally:
        server.server_close()
    return 0
