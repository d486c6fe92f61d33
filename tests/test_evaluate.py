"""Held-out metrics: BLEU/chrF agree with sacrebleu, multiple references, exact match and token accuracy;
batched translation returns each source's own output, in input order."""
import numpy as np
import pytest
import sacrebleu

from lstm_np.data import EOS, SPECIALS, Vocab, pad_batch
from lstm_np.evaluate import (closest_reference, corpus_scores, edit_distance, encode_source, evaluate, group_references,
                              token_matches, translate_all)

from helpers import SRC_V, TGT_V, make_model

HYPS = ["the cat sat on the mat .", "a dog barks", "il fait beau"]
REFS = [["the cat sat on a mat .", "a cat sat on the mat ."], ["the dog barks"], ["il fait beau", "le temps est beau"]]


def test_bleu_and_chrf_agree_with_sacrebleu_on_a_fixed_multi_reference_example():
    bleu, chrf = corpus_scores(HYPS, REFS, tokens="word")
    # sacrebleu's own multi-reference call; the one-reference source gets its reference twice, which changes
    # neither clipped n-gram counts nor the closest reference length
    streams = [[r[0] for r in REFS], [r[1] if len(r) > 1 else r[0] for r in REFS]]
    assert bleu == pytest.approx(sacrebleu.corpus_bleu(HYPS, streams).score, abs=1e-9)
    assert chrf == pytest.approx(sacrebleu.corpus_chrf(HYPS, streams).score, abs=1e-9)
    one_ref = [[r[0]] for r in REFS]
    assert corpus_scores(HYPS, [r * 3 for r in one_ref], "word")[0] == pytest.approx(
        sacrebleu.corpus_bleu(HYPS, [[r[0] for r in REFS]]).score, abs=1e-9), "repeated references change nothing"
    assert 0 < bleu < 100


def test_character_level_bleu_uses_character_tokens():
    bleu, _ = corpus_scores(["2021-04-03"], [["2021-04-03"]], tokens="char")
    assert bleu == pytest.approx(100.0)
    assert corpus_scores(["2021-04-30"], [["2021-04-03"]], tokens="char")[0] < 100


def test_group_references_keeps_first_appearance_order_and_all_references():
    pairs = [("a", "x"), ("b", "y"), ("a", "z")]
    assert group_references(pairs) == [("a", ["x", "z"]), ("b", ["y"])]


def test_token_matches_counts_positions_including_eos():
    assert token_matches([5, 6, 7], [5, 6, 7]) == 4          # three tokens and the EOS
    assert token_matches([5, 9], [5, 6, 7]) == 1
    assert token_matches([], []) == 1


def test_lower_cased_vocabulary_is_scored_against_lower_cased_references():
    vocab = Vocab.build(["Il fait beau ."], tokens="word", lower=True)

    class Echo:  # a stand-in model that always outputs "il fait beau ."
        def translate(self, src, max_len, beam_size):
            return [vocab.encode("il fait beau .") for _ in range(np.asarray(src).shape[0])]

    metrics, examples = evaluate(Echo(), vocab, vocab, [("x", "Il fait beau .")], max_len=10, with_bleu=True)
    assert metrics["exact_match"] == 1.0
    assert metrics["bleu"] == pytest.approx(100.0), "case must not cost BLEU when the model is trained lower-cased"


def one_at_a_time(model, sources, max_len):
    """Each source translated alone (a batch of one): what the batched, length-sorted path must reproduce."""
    return [model.translate(pad_batch([s]), max_len=max_len)[0] for s in sources]


def test_translate_all_returns_each_sources_output_in_input_order():
    """A real (random, float64) model: translate_all sorts the sources by length into batches of 3, and must
    put every output back at its source's place."""
    model = make_model("diagonal", attention="luong", seed=8, size=8).eval()
    rng = np.random.default_rng(1)
    lengths = [5, 1, 3, 6, 2, 4, 1, 5]
    sources = [rng.integers(4, SRC_V, size=n - 1).tolist() + [EOS] for n in lengths]
    assert list(np.argsort(lengths, kind="stable")) != list(range(len(sources))), "the order must change"
    expected = one_at_a_time(model, sources, max_len=6)
    assert len({tuple(e) for e in expected}) >= 4, "the check needs outputs that tell the sources apart"
    assert translate_all(model, sources, max_len=6, batch_size=3) == expected


def test_evaluate_scores_each_source_with_its_own_translation():
    model = make_model("diagonal", attention="luong", seed=8, size=8).eval()
    src_vocab = Vocab(list(SPECIALS) + list("abc"))                  # 7 ids: the model's source vocabulary
    tgt_vocab = Vocab(list(SPECIALS) + list("xy"))                   # 6 ids: its target vocabulary
    assert (len(src_vocab), len(tgt_vocab)) == (SRC_V, TGT_V)
    texts = ["abcab", "c", "ba", "cccc", "a", "bcb"]
    outputs = one_at_a_time(model, [encode_source(src_vocab, t) for t in texts], max_len=4)
    decoded = [tgt_vocab.decode(o) for o in outputs]
    assert len(set(decoded)) >= 3, "the check needs outputs that tell the sources apart"
    metrics, examples = evaluate(model, src_vocab, tgt_vocab, [(t, "xy") for t in texts], max_len=4)
    assert [(src, text) for src, _, text in examples] == list(zip(texts, decoded))
    assert metrics["examples"] == len(texts)


@pytest.mark.parametrize("a, b, distance", [
    ("", "", 0), ("abc", "", 3), ("", "ab", 2), ("abc", "abc", 0),
    ("kitten", "sitting", 3),       # k→s, e→i, +g
    ("flaw", "lawn", 2),            # -f, +n
    ("abcd", "acbd", 2),            # a transposition costs two substitutions
    ("ab", "ba", 2), ("aaa", "a", 2),
])
def test_edit_distance_on_hand_counted_cases(a, b, distance):
    assert edit_distance(list(a), list(b)) == distance
    assert edit_distance(list(b), list(a)) == distance


def test_closest_reference_is_the_nearest_and_on_a_tie_the_longer():
    assert closest_reference([1, 2, 3], [[1, 2], [1, 2, 3, 4, 5], [9]]) == (1, 2)
    assert closest_reference([1, 2, 3], [[1, 2], [1, 2, 3, 4]]) == (1, 4)        # tie at 1: the longer one


def test_token_error_rate_sums_distances_over_closest_reference_lengths_once_per_source():
    """G2P-style: phones as word tokens, two references for one word. By hand: "K AE T" (right, 0 errors against
    the 3-phone reference it equals), "D AO G" for refs "D AA G" / "D AO G Z" (1 substitution vs 1 insertion: a
    tie, the 4-phone reference counts), "B ER D" output "B ER" (1 deletion over 3). TER = (0 + 1 + 1) / (3 + 4 + 3);
    exact match 1/3 (the CAT source appears twice in the data and counts once)."""
    vocab = Vocab.build(["K AE T D AA G AO Z B ER"], tokens="word")
    outputs = {"CAT": "K AE T", "DOG": "D AO G", "BIRD": "B ER"}

    class Fixed:  # a stand-in model answering each source with its fixed output (batches are sorted by length)
        def translate(self, src, max_len, beam_size):
            return [vocab.encode(outputs[decode_source(row)]) for row in np.asarray(src)]

    src_vocab = Vocab.build(["CAT DOG BIRD"], tokens="char")

    def decode_source(row):
        return src_vocab.decode([i for i in row if i != EOS and i != 0])

    pairs = [("CAT", "K AE T"), ("DOG", "D AA G"), ("DOG", "D AO G Z"), ("BIRD", "B ER D"), ("CAT", "K AE T")]
    metrics, _ = evaluate(Fixed(), src_vocab, vocab, pairs, max_len=10)
    assert metrics["exact_match"] == pytest.approx(1 / 3)
    assert metrics["token_error_rate"] == pytest.approx(2 / 10)
