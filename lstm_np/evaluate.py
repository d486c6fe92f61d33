"""Held-out metrics of a translation model: exact match, token accuracy, corpus BLEU and chrF (sacrebleu).

When the same source appears several times (several reference translations), it is translated once and
scored against all of its references: exact match if the output equals any of them, token accuracy
against the best-matching one, BLEU and chrF with every reference.

Token error rate (the phoneme error rate of G2P, the character error rate of character tasks):

    TER = Σ_sources d(output, closest reference) / Σ_sources len(closest reference)

with d the Levenshtein distance in tokens (insertions, deletions and substitutions cost 1) and the closest
reference the one at the smallest distance (on a tie, the longer one). With each distinct source counted once and
right when it equals any reference, 1 - exact match is the word error rate of G2P.
"""
import numpy as np

from .data import EOS, pad_batch


def group_references(pairs):
    """[(src, tgt), ...] -> [(src, [tgt, ...]), ...] in order of first appearance."""
    refs = {}
    for src, tgt in pairs:
        refs.setdefault(src, []).append(tgt)
    return list(refs.items())


def encode_source(vocab, text):
    """Source ids as the encoder reads them: the tokens, then EOS (so an empty string is one EOS)."""
    return vocab.encode(text) + [EOS]


def translate_all(model, sources, max_len, beam_size=1, batch_size=256):
    """Token-id lists -> model outputs (token-id lists), batched by similar length, in input order."""
    order = np.argsort([len(s) for s in sources], kind="stable")
    out = [None] * len(sources)
    for i in range(0, len(order), batch_size):
        idx = order[i:i + batch_size]
        for j, pred in zip(idx, model.translate(pad_batch([sources[j] for j in idx]), max_len, beam_size)):
            out[j] = pred
    return out


def token_matches(pred, ref):
    """Positions j < len(ref)+1 where pred+[EOS] and ref+[EOS] agree (EOS counts: stopping is a token)."""
    p, r = list(pred) + [EOS], list(ref) + [EOS]
    return sum(a == b for a, b in zip(p, r))


def edit_distance(a, b):
    """Levenshtein distance between token sequences `a` and `b` (unit costs), by the row-by-row dynamic program:
    row[j] = distance between a[:i] and b[:j]."""
    row = list(range(len(b) + 1))                        # a[:0] against b[:j]: j insertions
    for i, x in enumerate(a, start=1):
        diagonal, row[0] = row[0], i                     # a[:i] against b[:0]: i deletions
        for j, y in enumerate(b, start=1):
            diagonal, row[j] = row[j], min(row[j] + 1,              # delete x
                                           row[j - 1] + 1,          # insert y
                                           diagonal + (x != y))     # substitute (free when equal)
    return row[-1]


def closest_reference(pred, refs):
    """(distance, reference length) of the reference of `refs` closest to `pred` (ties: the longer one)."""
    return min(((edit_distance(pred, r), len(r)) for r in refs), key=lambda d_n: (d_n[0], -d_n[1]))


def corpus_scores(hypotheses, references, tokens):
    """(BLEU 0-100, chrF 0-100) with sacrebleu. Character-level tasks use sacrebleu's char tokenizer.

    references: one list of strings per hypothesis (varying counts are padded by repeating the first
    reference, which changes neither BLEU's clipped counts nor its closest reference length)."""
    from sacrebleu.metrics import BLEU, CHRF
    n = max(len(r) for r in references)
    streams = [[r[k] if k < len(r) else r[0] for r in references] for k in range(n)]
    bleu = BLEU(tokenize="char" if tokens == "char" else "13a")
    return (float(bleu.corpus_score(hypotheses, streams).score),
            float(CHRF().corpus_score(hypotheses, streams).score))


def evaluate(model, src_vocab, tgt_vocab, pairs, max_len, beam_size=1, with_bleu=False):
    """Metrics of `model` on [(src, tgt), ...] text pairs, plus the predictions as text."""
    grouped = group_references(pairs)
    sources = [encode_source(src_vocab, s) for s, _ in grouped]
    preds = translate_all(model, sources, max_len, beam_size)
    exact, matched, total, errors, ref_tokens = 0, 0, 0, 0, 0
    for pred, (_, refs) in zip(preds, grouped):
        ref_ids = [tgt_vocab.encode(r) for r in refs]
        exact += any(pred == r for r in ref_ids)
        best = max(ref_ids, key=lambda r: token_matches(pred, r) / (len(r) + 1))
        matched += token_matches(pred, best)
        total += len(best) + 1
        distance, length = closest_reference(pred, ref_ids)
        errors, ref_tokens = errors + distance, ref_tokens + length
    texts = [tgt_vocab.decode(p) for p in preds]
    if tgt_vocab.lower:  # the model writes lower case: score against lower-cased references, as exact match does
        grouped = [(src, [r.lower() for r in refs]) for src, refs in grouped]
    metrics = {"exact_match": exact / len(grouped), "token_accuracy": matched / total,
               "token_error_rate": errors / max(ref_tokens, 1), "examples": len(grouped)}
    if with_bleu:
        metrics["bleu"], metrics["chrf"] = corpus_scores(texts, [refs for _, refs in grouped], tgt_vocab.tokens)
    return metrics, [(src, refs, text) for (src, refs), text in zip(grouped, texts)]


def as_test_metrics(metrics):
    """The final metrics' test_* keys (docs/design.md §4) of evaluate()'s metrics with BLEU, and the one line
    that reports them (the log's test line, `lstm-np evaluate`'s output)."""
    result = {"test_exact_match": metrics["exact_match"], "test_token_accuracy": metrics["token_accuracy"],
              "test_token_error_rate": metrics["token_error_rate"], "test_bleu": metrics["bleu"],
              "test_chrf": metrics["chrf"], "test_examples": metrics["examples"]}
    line = (f"exact match {metrics['exact_match']:.4f} | token accuracy {metrics['token_accuracy']:.4f} | "
            f"token error rate {metrics['token_error_rate']:.4f} | BLEU {metrics['bleu']:.2f} | "
            f"chrF {metrics['chrf']:.2f} | {metrics['examples']} sources")
    return result, line
