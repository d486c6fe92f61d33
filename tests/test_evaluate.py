"""Held-out metrics: BLEU/chrF agree with sacrebleu, multiple references, exact match and token accuracy."""
import pytest
import sacrebleu

from lstm_np.evaluate import corpus_scores, group_references, token_matches

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
    import numpy as np

    from lstm_np.data import Vocab
    from lstm_np.evaluate import evaluate

    vocab = Vocab.build(["Il fait beau ."], tokens="word", lower=True)

    class Echo:  # a stand-in model that always outputs "il fait beau ."
        def translate(self, src, max_len, beam_size):
            return [vocab.encode("il fait beau .") for _ in range(np.asarray(src).shape[0])]

    metrics, examples = evaluate(Echo(), vocab, vocab, [("x", "Il fait beau .")], max_len=10, with_bleu=True)
    assert metrics["exact_match"] == 1.0
    assert metrics["bleu"] == pytest.approx(100.0), "case must not cost BLEU when the model is trained lower-cased"
