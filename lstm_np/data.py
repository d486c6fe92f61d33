"""Text → padded id batches: tokenization, Vocab, TSV loading, padding and length-bucketed batching, and the
operations on padded batches the models share (real lengths, reversal within them, teacher-forcing input).

Every vocabulary reserves the same four ids, which the models rely on:

    PAD = 0  "<pad>"   fills the right end of shorter sequences in a batch
    BOS = 1  "<bos>"   first decoder input
    EOS = 2  "<eos>"   appended to every target; decoding stops there
    UNK = 3  "<unk>"   any token not in the vocabulary
"""
from __future__ import annotations

import json
import os
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np

from .checks import check_int, check_size
from .files import atomic_write

PAD, BOS, EOS, UNK = 0, 1, 2, 3
SPECIALS = ("<pad>", "<bos>", "<eos>", "<unk>")
TOKEN_MODES = ("char", "word")

# A word is a run of letters/digits, optionally joined by apostrophes ("don't", "c'est", "aujourd’hui");
# any other non-space character (punctuation, symbols, the hyphen of "est-ce") is a token on its own.
_WORD_RE = re.compile(r"\w+(?:['’]\w+)*|[^\w\s]")
_NO_SPACE_BEFORE = frozenset(".,!?;:)]}%»")
_NO_SPACE_AFTER = frozenset("([{«")


class DataError(ValueError):
    """A malformed or unreadable data file; the message starts with "path:" or "path:lineno:"."""


def _check_mode(tokens: str) -> None:
    if tokens not in TOKEN_MODES:
        raise ValueError(f"tokens must be one of {TOKEN_MODES}, got {tokens!r}")


def tokenize(text: str, tokens: str = "char", lower: bool = False) -> list[str]:
    """Split `text` into tokens.

    "char": one token per character, spaces included.  "word": the text is NFC-normalised (so an accent
    typed as a combining mark stays inside its word), then split into words and single punctuation
    marks: "Qu'est-ce que c'est ?" → ["Qu'est", "-", "ce", "que", "c'est", "?"].  `lower` lower-cases first.
    """
    _check_mode(tokens)
    if lower:
        text = text.lower()
    if tokens == "char":
        return list(text)
    return _WORD_RE.findall(unicodedata.normalize("NFC", text))


def detokenize(tokens_list: Sequence[str], tokens: str = "char") -> str:
    """Inverse of `tokenize` (exact for "char"; for "word", tokens are joined by single spaces, except
    none before closing punctuation such as `.,!?;:)` and none after an opening bracket)."""
    _check_mode(tokens)
    if tokens == "char":
        return "".join(tokens_list)
    parts: list[str] = []
    for k, tok in enumerate(tokens_list):
        if k > 0 and tok not in _NO_SPACE_BEFORE and tokens_list[k - 1] not in _NO_SPACE_AFTER:
            parts.append(" ")
        parts.append(tok)
    return "".join(parts)


class Vocab:
    """A token ↔ id mapping whose ids 0..3 are always `SPECIALS`.

    Attributes: `tokens` ("char" or "word"), `lower` (lower-case before tokenizing), `id_to_token`
    (list, id → token) and `token_to_id` (dict, token → id).  Decoding shows UNK as "<unk>" in both modes.
    """

    def __init__(self, id_to_token: Sequence[str], tokens: str = "char", lower: bool = False):
        self._validate(id_to_token, tokens, lower)
        self.tokens = tokens
        self.lower = lower
        self.id_to_token = list(id_to_token)
        self.token_to_id = {tok: i for i, tok in enumerate(self.id_to_token)}

    @staticmethod
    def _validate(itos: object, tokens: object, lower: object) -> None:
        if tokens not in TOKEN_MODES:
            raise ValueError(f"vocab 'tokens' must be one of {TOKEN_MODES}, got {tokens!r}")
        if not isinstance(lower, bool):
            raise ValueError(f"vocab 'lower' must be a bool, got {lower!r}")
        if not isinstance(itos, (list, tuple)) or not all(isinstance(t, str) for t in itos):
            raise ValueError("vocab 'itos' must be a list of strings")
        if tuple(itos[: len(SPECIALS)]) != SPECIALS:
            raise ValueError(f"vocab 'itos' must start with the specials {list(SPECIALS)}, got {list(itos[:4])}")
        duplicates = sorted(tok for tok, n in Counter(itos).items() if n > 1)
        if duplicates:
            raise ValueError(f"vocab 'itos' has duplicate tokens: {duplicates[:10]}")
        bad = [t for t in itos[len(SPECIALS):] if (len(t) != 1 if tokens == "char" else not t)]
        if bad:
            raise ValueError(f"vocab 'itos' has tokens invalid for tokens={tokens!r}: {bad[:10]}")

    @classmethod
    def build(cls, texts: Iterable[str], tokens: str = "char", lower: bool = False,
              min_freq: int = 1, max_size: int | None = None) -> "Vocab":
        """Vocabulary of the tokens of `texts` seen at least `min_freq` times, most frequent first (ties
        broken lexicographically, so the result is deterministic), at most `max_size` entries in all
        (the 4 specials included)."""
        _check_mode(tokens)
        check_int("min_freq", min_freq, low=1)
        if max_size is not None:
            check_int("max_size", max_size, low=len(SPECIALS))
        counts = Counter(tok for text in texts for tok in tokenize(text, tokens, lower))
        kept = sorted((tok for tok, n in counts.items() if n >= min_freq),
                      key=lambda tok: (-counts[tok], tok))
        if max_size is not None:
            kept = kept[: max_size - len(SPECIALS)]
        return cls(list(SPECIALS) + kept, tokens, lower)

    def __len__(self) -> int:
        return len(self.id_to_token)

    def encode(self, text: str) -> list[int]:
        """Token ids of `text`; tokens not in the vocabulary become UNK.  No BOS/EOS is added."""
        return [self.token_to_id.get(tok, UNK) for tok in tokenize(text, self.tokens, self.lower)]

    def unknown(self, text: str) -> list[str]:
        """The distinct tokens of `text` that are not in the vocabulary (`encode` reads them as UNK), in order
        of first appearance."""
        return list(dict.fromkeys(tok for tok in tokenize(text, self.tokens, self.lower)
                                  if tok not in self.token_to_id))

    def decode(self, ids: Iterable[int]) -> str:
        """Text of `ids` (any int sequence or 1-D array): stops at the first EOS, skips PAD and BOS."""
        out = []
        for i in ids:
            i = int(i)
            if not 0 <= i < len(self.id_to_token):
                raise ValueError(f"ids: token id {i} out of range [0, {len(self.id_to_token)})")
            if i == EOS:
                break
            if i not in (PAD, BOS):
                out.append(self.id_to_token[i])
        return detokenize(out, self.tokens)

    def to_dict(self) -> dict:
        """JSON-serialisable form: {"tokens": "char", "lower": false, "itos": [...]}."""
        return {"tokens": self.tokens, "lower": self.lower, "itos": list(self.id_to_token)}

    @classmethod
    def from_dict(cls, d: dict) -> "Vocab":
        """Inverse of `to_dict`; raises ValueError naming what is wrong with `d`."""
        if not isinstance(d, dict):
            raise ValueError(f"vocab dict must be a dict, got {type(d).__name__}")
        missing = [k for k in ("tokens", "lower", "itos") if k not in d]
        if missing:
            raise ValueError(f"vocab dict is missing keys {missing}")
        return cls(d["itos"], d["tokens"], d["lower"])

    def save(self, path: str | os.PathLike) -> None:
        """Write `to_dict()` as UTF-8 JSON, atomically (`atomic_write`)."""
        atomic_write(path, lambda f: f.write(json.dumps(self.to_dict(), ensure_ascii=False).encode("utf-8")))

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Vocab":
        """Read a file written by `save`; DataError if unreadable or not JSON, ValueError if invalid."""
        try:
            with open(path, encoding="utf-8") as f:
                d = json.load(f)
        except FileNotFoundError:
            raise DataError(f"{path}: no such file") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise DataError(f"{path}: cannot read vocabulary: {e}") from None
        return cls.from_dict(d)


def read_tsv(path: str | os.PathLike) -> list[tuple[str, str]]:
    """(source, target) pairs of a UTF-8 `source<TAB>target` file, one pair per line.

    Accepts a leading byte-order mark and CRLF line endings, skips lines holding only whitespace, and
    strips leading/trailing whitespace from each field.  Raises DataError "path:lineno: ..." for a line
    without exactly one tab, an empty field or invalid UTF-8; "path: ..." if the file is missing,
    unreadable or holds no pairs.
    """
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a directory") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read: {e.strerror or e}") from None
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    pairs = []
    # Decode line by line so an encoding error can be reported with its line number.
    for lineno, raw_line in enumerate(raw.split(b"\n"), start=1):
        try:
            line = raw_line.rstrip(b"\r").decode("utf-8")
        except UnicodeDecodeError as e:
            raise DataError(f"{path}:{lineno}: invalid UTF-8 at byte {e.start} of the line") from None
        if not line.strip():
            continue
        n_tabs = line.count("\t")
        if n_tabs != 1:
            what = "no tab" if n_tabs == 0 else f"{n_tabs} tabs"
            raise DataError(f"{path}:{lineno}: {what}, expected exactly one (source<TAB>target)")
        src, tgt = (field.strip() for field in line.split("\t"))
        if not src or not tgt:
            raise DataError(f"{path}:{lineno}: empty {'source' if not src else 'target'}")
        pairs.append((src, tgt))
    if not pairs:
        raise DataError(f"{path}: no examples")
    return pairs


def pad_batch(seqs: Sequence[Sequence[int]], pad: int = PAD, add_eos: bool = False) -> np.ndarray:
    """Right-pad integer sequences into one (B, L) int64 array, L = longest length (after appending EOS
    to every sequence if `add_eos`)."""
    if len(seqs) == 0:
        raise ValueError("seqs must hold at least one sequence, got none")
    arrays = []
    for b, s in enumerate(seqs):
        a = np.asarray(s)
        if a.ndim != 1 or (a.size and a.dtype.kind not in "iu"):
            raise ValueError(f"seqs[{b}] must be a 1-D sequence of ints, got shape {a.shape} dtype {a.dtype}")
        arrays.append(np.append(a.astype(np.int64), EOS) if add_eos else a.astype(np.int64))
    out = np.full((len(arrays), max(len(a) for a in arrays)), pad, dtype=np.int64)   # (B, L)
    for b, a in enumerate(arrays):
        out[b, : len(a)] = a
    return out


def lengths_of(ids):
    """Number of real tokens per row (at least 1: an all-PAD row reads one PAD, whose embedding is zero)."""
    return np.maximum((ids != PAD).sum(axis=1), 1)


def reverse_within_lengths(x, lengths):
    """x (B, ..., S) -> same shape, row b's first lengths[b] entries along the last axis reversed and the rest
    left in place: token ids (B, S), or attention weights (B, T, S) over them. The map is its own inverse."""
    S = x.shape[-1]
    pos = np.arange(S)[None, :]
    src_pos = np.where(pos < lengths[:, None], lengths[:, None] - 1 - pos, pos)         # (B, S)
    return np.take_along_axis(x, src_pos.reshape((len(lengths),) + (1,) * (x.ndim - 2) + (S,)), axis=-1)


def teacher_forcing_input(tgt):
    """tgt (B, T) -> the decoder's inputs (B, T): BOS, y_1 .. y_{T-1}."""
    return np.concatenate([np.full((tgt.shape[0], 1), BOS), tgt[:, :-1]], axis=1)


def batches(lengths: Sequence[int], batch_size: int, rng: np.random.Generator | None = None,
            shuffle: bool = True) -> list[np.ndarray]:
    """Split example indices 0..N-1 into batches (int64 index arrays) covering each index exactly once.

    shuffle=True groups examples of similar length to reduce padding: permute the indices with `rng`, cut
    them into chunks of 50 batches, sort each chunk by length (stable), cut it into batches, and shuffle
    the batch order with `rng`.  shuffle=False returns consecutive batches in the original order.
    The same `rng` state gives the same batches.
    """
    check_size("batch_size", batch_size)
    lengths = np.asarray(lengths, dtype=np.int64).reshape(-1)                  # (N,)
    n = len(lengths)
    if not shuffle:
        return [np.arange(s, min(s + batch_size, n), dtype=np.int64) for s in range(0, n, batch_size)]
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"rng must be a numpy.random.Generator when shuffle=True, got {type(rng).__name__}")
    order = rng.permutation(n)
    chunk = batch_size * 50
    out = []
    for s in range(0, n, chunk):
        idx = order[s: s + chunk]
        idx = idx[np.argsort(lengths[idx], kind="stable")]
        out.extend(idx[k: k + batch_size].astype(np.int64) for k in range(0, len(idx), batch_size))
    return [out[k] for k in rng.permutation(len(out))]

