"""Tokenization, Vocab, TSV loading, padding and batching in lstm_np.data."""
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lstm_np.data import (BOS, EOS, PAD, SPECIALS, UNK, DataError, Vocab, batches, detokenize, pad_batch,
                          read_tsv, tokenize)

# ----------------------------------------------------------------------------- tokenization


@pytest.mark.parametrize("text, expected", [
    ("Hello, world!", ["Hello", ",", "world", "!"]),
    ("Don't stop: it's 3 km (far).", ["Don't", "stop", ":", "it's", "3", "km", "(", "far", ")", "."]),
    ("Qu'est-ce que c'est ?", ["Qu'est", "-", "ce", "que", "c'est", "?"]),
    ("L’élève a mangé, aujourd’hui !", ["L’élève", "a", "mangé", ",", "aujourd’hui", "!"]),
    ("  Ça   va?  ", ["Ça", "va", "?"]),
])
def test_word_tokenize_splits_punctuation_and_keeps_apostrophe_words(text, expected):
    assert tokenize(text, "word") == expected


def test_word_tokenize_keeps_decomposed_accents_inside_the_word():
    assert tokenize("cafe\u0301 noir", "word") == ["café", "noir"]


def test_char_tokenize_keeps_spaces_and_lower_lowercases_first():
    assert tokenize("Ab c", "char") == ["A", "b", " ", "c"]
    assert tokenize("Ab C.", "word", lower=True) == ["ab", "c", "."]


def test_unknown_token_mode_raises_naming_tokens():
    with pytest.raises(ValueError, match="tokens"):
        tokenize("abc", tokens="bpe")
    with pytest.raises(ValueError, match="tokens"):
        detokenize(["a"], tokens="bpe")


def test_word_detokenize_puts_no_space_before_closing_or_after_opening_punctuation():
    toks = ["Hi", ",", "you", "(", "there", ")", "!", "Ok", "?"]
    assert detokenize(toks, "word") == "Hi, you (there)! Ok?"
    assert detokenize(tokenize("Don't stop: it's 3 km (far).", "word"), "word") == "Don't stop: it's 3 km (far)."

# ----------------------------------------------------------------------------- Vocab


def test_vocab_specials_come_first_then_tokens_by_frequency_then_alphabet():
    vocab = Vocab.build(["abb", "cbc", "d"])
    assert vocab.id_to_token == list(SPECIALS) + ["b", "c", "a", "d"]
    assert (PAD, BOS, EOS, UNK) == (0, 1, 2, 3)
    assert len(vocab) == 8 and vocab.token_to_id["b"] == 4


def test_vocab_min_freq_and_max_size_limit_the_tokens():
    texts = ["aaab", "bbc"]
    assert Vocab.build(texts, min_freq=2).id_to_token[4:] == ["a", "b"]
    assert Vocab.build(texts, max_size=5).id_to_token[4:] == ["a"]
    with pytest.raises(ValueError, match="max_size"):
        Vocab.build(texts, max_size=3)
    with pytest.raises(ValueError, match="min_freq"):
        Vocab.build(texts, min_freq=0)


def test_vocab_encode_decode_round_trips_and_unknown_becomes_unk():
    vocab = Vocab.build(["hello world"])
    ids = vocab.encode("hello")
    assert BOS not in ids and EOS not in ids
    assert vocab.decode(ids) == "hello"
    assert vocab.encode("hez") == [vocab.token_to_id["h"], vocab.token_to_id["e"], UNK]
    assert vocab.decode(vocab.encode("hez")) == "he<unk>"


def test_vocab_decode_stops_at_eos_and_skips_pad_and_bos():
    vocab = Vocab.build(["ab"])
    a, b = vocab.token_to_id["a"], vocab.token_to_id["b"]
    assert vocab.decode(np.array([BOS, a, PAD, b, EOS, a, a])) == "ab"
    with pytest.raises(ValueError, match="ids"):
        vocab.decode([a, len(vocab)])


def test_word_vocab_decodes_to_readable_text():
    vocab = Vocab.build(["Je suis là, merci !"], tokens="word", lower=True)
    assert vocab.decode(vocab.encode("Merci, je suis là !")) == "merci, je suis là!"


def test_vocab_save_load_round_trips_through_utf8_json(tmp_path):
    vocab = Vocab.build(["Qu'est-ce que c'est ? Ça, là…"], tokens="word", lower=True)
    path = tmp_path / "vocab.json"
    vocab.save(path)
    assert json.loads(path.read_text(encoding="utf-8")) == vocab.to_dict()
    loaded = Vocab.load(path)
    assert loaded.to_dict() == vocab.to_dict()
    assert (loaded.tokens, loaded.lower) == ("word", True)
    assert [p.name for p in tmp_path.iterdir()] == ["vocab.json"], "temporary file left behind"


def test_vocab_load_of_missing_or_broken_file_raises_data_error(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        Vocab.load(tmp_path / "nope.json")
    (tmp_path / "bad.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(DataError, match="bad.json"):
        Vocab.load(tmp_path / "bad.json")


GOOD = {"tokens": "char", "lower": False, "itos": list(SPECIALS) + ["a", "b"]}


@pytest.mark.parametrize("change, message", [
    ({"tokens": "bpe"}, "tokens"),
    ({"lower": "no"}, "lower"),
    ({"itos": "abc"}, "itos"),
    ({"itos": ["<bos>", "<pad>", "<eos>", "<unk>", "a"]}, "specials"),
    ({"itos": list(SPECIALS) + ["a", "a"]}, "duplicate"),
    ({"itos": list(SPECIALS) + ["ab"]}, "invalid"),
    ({"itos": list(SPECIALS) + [7]}, "itos"),
])
def test_vocab_from_dict_rejects_bad_dicts_naming_the_problem(change, message):
    assert Vocab.from_dict(GOOD).id_to_token[4:] == ["a", "b"]
    with pytest.raises(ValueError, match=message):
        Vocab.from_dict({**GOOD, **change})
    with pytest.raises(ValueError, match="missing"):
        Vocab.from_dict({"tokens": "char"})


@settings(max_examples=60, deadline=None)
@given(texts=st.lists(st.text(), max_size=5), probe=st.text())
def test_vocab_never_crashes_on_any_unicode_and_char_mode_round_trips(texts, probe):
    for mode in ("char", "word"):
        vocab = Vocab.build(texts, tokens=mode)
        vocab.decode(vocab.encode(probe))
        Vocab.from_dict(json.loads(json.dumps(vocab.to_dict())))
    char_vocab = Vocab.build(texts + [probe])
    assert char_vocab.decode(char_vocab.encode(probe)) == probe

# ----------------------------------------------------------------------------- read_tsv


def write(tmp_path, data: bytes, name="data.tsv"):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_read_tsv_reads_pairs_and_strips_fields(tmp_path):
    path = write(tmp_path, "hello\tbonjour\n  a b \t c d  \nçà\tlà".encode())
    assert read_tsv(path) == [("hello", "bonjour"), ("a b", "c d"), ("çà", "là")]


def test_read_tsv_accepts_bom_crlf_and_skips_blank_lines(tmp_path):
    path = write(tmp_path, b"\xef\xbb\xbfone\tun\r\n\r\n   \r\ntwo\ttwo\r\n\n")
    assert read_tsv(path) == [("one", "un"), ("two", "two")]


@pytest.mark.parametrize("data, lineno, message", [
    (b"a\tb\nno tab here\n", 2, "no tab"),
    (b"a\tb\n\nx\ty\tz\n", 3, "2 tabs"),
    (b"\tb\n", 1, "empty source"),
    (b"a\tb\na\t  \n", 2, "empty target"),
    (b"a\tb\nc\td\ne\t\xff\xfe\n", 3, "UTF-8"),
    (b"a\tb\r\n\xc3(\tx\r\n", 2, "UTF-8"),
])
def test_read_tsv_reports_path_and_line_of_malformed_lines(tmp_path, data, lineno, message):
    path = write(tmp_path, data)
    with pytest.raises(DataError, match=message) as err:
        read_tsv(path)
    assert str(err.value).startswith(f"{path}:{lineno}: ")


def test_read_tsv_missing_directory_and_empty_files_raise_data_error(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        read_tsv(tmp_path / "missing.tsv")
    with pytest.raises(DataError, match="directory"):
        read_tsv(tmp_path)
    for data in (b"", b"\xef\xbb\xbf", b"\n \r\n\n"):
        with pytest.raises(DataError, match="no examples"):
            read_tsv(write(tmp_path, data))


@settings(max_examples=150, deadline=None)
@given(data=st.one_of(
    st.binary(max_size=200),
    st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=200).map(str.encode),
    st.lists(st.tuples(st.text(max_size=8), st.sampled_from(["\t", "\t\t", "", " \t "]),
                       st.text(max_size=8), st.sampled_from(["\n", "\r\n", "\n\n"])),
             max_size=6).map(lambda rows: "".join("".join(r) for r in rows).encode("utf-8", "surrogatepass")),
))
def test_read_tsv_on_any_bytes_returns_pairs_or_raises_data_error(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("fuzz") / "f.tsv"
    path.write_bytes(data)
    try:
        pairs = read_tsv(path)
    except DataError as e:
        assert str(e).startswith(str(path))
    else:
        assert pairs and all(s and t and s == s.strip() and t == t.strip() and "\t" not in s + t
                             for s, t in pairs)

# ----------------------------------------------------------------------------- padding and batching


def test_pad_batch_right_pads_to_the_longest_sequence():
    out = pad_batch([[5, 6, 7], [8], []])
    assert out.dtype == np.int64 and out.shape == (3, 3)
    assert out.tolist() == [[5, 6, 7], [8, PAD, PAD], [PAD, PAD, PAD]]
    assert pad_batch([[5], [6, 7]], add_eos=True).tolist() == [[5, EOS, PAD], [6, 7, EOS]]
    with pytest.raises(ValueError, match="seqs"):
        pad_batch([])
    with pytest.raises(ValueError, match=r"seqs\[1\]"):
        pad_batch([[1], [0.5]])


@pytest.mark.parametrize("shuffle", [True, False])
@pytest.mark.parametrize("n, batch_size", [(0, 3), (1, 1), (7, 3), (1000, 4), (1234, 7)])
def test_batches_cover_every_index_exactly_once(n, batch_size, shuffle):
    lengths = np.random.default_rng(0).integers(1, 30, size=n)
    out = batches(lengths, batch_size, np.random.default_rng(1), shuffle=shuffle)
    assert all(b.dtype == np.int64 and 1 <= len(b) <= batch_size for b in out)
    assert sorted(np.concatenate(out).tolist() if out else []) == list(range(n))


def test_batches_are_deterministic_for_a_seed_and_group_similar_lengths():
    lengths = np.random.default_rng(0).integers(1, 50, size=2000)
    first = batches(lengths, 8, np.random.default_rng(42))
    again = batches(lengths, 8, np.random.default_rng(42))
    other = batches(lengths, 8, np.random.default_rng(43))
    assert all(np.array_equal(a, b) for a, b in zip(first, again)) and len(first) == len(again)
    assert any(not np.array_equal(a, b) for a, b in zip(first, other))
    spread = np.mean([np.ptp(lengths[b]) for b in first])
    assert spread < 3, f"batches mix lengths: mean max-min length {spread:.1f}"


def test_batches_without_shuffle_keep_the_original_order():
    out = batches([3, 1, 2, 5, 4], 2, rng=None, shuffle=False)
    assert [b.tolist() for b in out] == [[0, 1], [2, 3], [4]]


def test_batches_reject_bad_batch_size():
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="batch_size"):
            batches([1, 2], bad, np.random.default_rng(0))


def test_vocab_unknown_lists_the_tokens_read_as_unk_once_each_in_order():
    chars = Vocab.build(["abc"])
    assert chars.unknown("xaxyb") == ["x", "y"]
    assert chars.unknown("cab") == []
    assert [chars.encode("xaxyb")[i] for i in (0, 2, 3)] == [UNK] * 3
    words = Vocab.build(["the cat"], tokens="word", lower=True)
    assert words.unknown("The dog, the CAT") == ["dog", ","]
