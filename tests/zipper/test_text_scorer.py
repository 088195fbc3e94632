"""The cached text scorer of the fused CTC search gives the numbers of scoring every text from scratch."""
from __future__ import annotations

import pytest
import torch

from tests.conftest import open_gates, tiny_text_tower, tiny_tower
from zipper import Segment, ZipperModel
from zipper.text_scorer import TextScorer, scores_from_scratch

TEXTS = ["", "the", "the cat", "the cat sat", "the cat sat down", "a dog", "don't stop", "the cat's",
         "zzqx blorp", "The", "it is it is it is it is"]


def _zip(tokenizer, prefix):
    speech = tiny_tower("llama", "speech", vocab=40, hidden=32, layers=2, seed=1, init_std=0.4)
    torch.manual_seed(3)
    m = ZipperModel.from_towers([speech, tiny_text_tower(tokenizer, seed=2)], directions=["speech->text"],
                                cross_attention_interval=[1, 1], prefix_ids=[[], list(prefix)])
    open_gates(m, 0.5)
    return m.eval()


def _memory(m):
    ids = torch.randint(3, 40, (1, 17), generator=torch.Generator().manual_seed(0))
    _, history, _ = m.run_segments([Segment("speech", ids)])
    return m.memory_for("text", history)


@pytest.mark.parametrize("prefix", [(), (7, 9)])
@pytest.mark.parametrize("max_states", [256, 3])
def test_cached_scores_equal_scores_from_scratch(smollm2_tokenizer, prefix, max_states):
    m = _zip(smollm2_tokenizer, prefix)
    memory = _memory(m)
    scorer = TextScorer(m, memory, batch_size=4, max_states=max_states)
    for ended in (False, True):
        want = torch.tensor(scores_from_scratch(m, memory, TEXTS, ended))  # each text whole, no cache
        # one text at a time (as the search asks: each grows the last by a word), then all at once again
        one_by_one = torch.tensor([scorer([t], ended)[0] for t in TEXTS])
        torch.testing.assert_close(one_by_one, want, atol=1e-4, rtol=0)
        torch.testing.assert_close(torch.tensor(scorer(TEXTS, ended)), want, atol=1e-4, rtol=0)
        assert len(scorer.states) <= max(max_states, 2)
    assert scorer([""], False) == [0.0]  # the forced start alone costs nothing
    assert not any(state.kv.requires_grad for state in scorer.states.values())


def test_a_longer_text_reuses_its_prefix(smollm2_tokenizer):
    """Once "the cat" is scored, "the cat sat" (one token more) costs no forward: its log-prob is read off "the cat"'s
    next-token log-probs; "the cat sat down" then runs the tokens of " sat down" only, and "the cat zzqx" those of
    " zzqx"."""
    m = _zip(smollm2_tokenizer, ())
    memory = _memory(m)
    scorer = TextScorer(m, memory)
    scorer(["the cat"], False)
    seen = []
    forward = m.tower_forward
    m.tower_forward = lambda modality, ids, *a, **k: seen.append(tuple(ids.shape)) or forward(modality, ids, *a, **k)
    texts = ["the cat sat", "the cat sat down", "the cat zzqx"]
    got = [scorer([t], False)[0] for t in texts]
    n = [len(smollm2_tokenizer(w, add_special_tokens=False).input_ids) for w in (" sat", " sat down", " zzqx")]
    assert n[0] == 1 and seen == [(1, n[1]), (1, n[2])]
    m.tower_forward = forward
    torch.testing.assert_close(torch.tensor(got), torch.tensor(scores_from_scratch(m, memory, texts, False)),
                               atol=1e-4, rtol=0)


def test_a_long_text_is_scored_whole(smollm2_tokenizer):
    """A 133-word hypothesis (past text_ids' default 128 tokens) is scored to its last word: two that
    differ only there score differently, and every token is in the ids the scorer runs."""
    from zipper.text_scorer import sentence_ids

    m = _zip(smollm2_tokenizer, (7, 9))
    base = " ".join(["the cat sat on the mat"] * 22)  # 132 words
    texts = [base + " today", base + " tomorrow"]
    start = m.start_ids("text")
    for t in texts:
        n_tokens = len(smollm2_tokenizer(t[:1].upper() + t[1:], add_special_tokens=False).input_ids)
        assert n_tokens > 128 and len(sentence_ids(m.tower("text"), t, start, ended=True)) == len(start) + n_tokens + 1
    scorer = TextScorer(m, _memory(m))
    for ended in (False, True):
        got = scorer(texts, ended)
        assert got[0] != got[1]
        want = scores_from_scratch(m, _memory(m), texts, ended)
        torch.testing.assert_close(torch.tensor(got), torch.tensor(want), atol=1e-4, rtol=1e-6)  # sums of ~130 logps


def test_scorers_of_several_utterances_share_forwards_and_get_what_each_gets_alone(smollm2_tokenizer):
    """`score_together`: the texts of three utterances (speech of different lengths) in shared batches give each
    scorer's own numbers, in fewer forwards than the three alone."""
    from zipper.text_scorer import score_together

    m = _zip(smollm2_tokenizer, (7, 9))
    memories = []
    for seed, n in ((0, 17), (1, 9), (2, 23)):
        ids = torch.randint(3, 40, (1, n), generator=torch.Generator().manual_seed(seed))
        memories.append(m.memory_for("text", m.run_segments([Segment("speech", ids)])[1]))
    requests = [(TEXTS[:4], False), (TEXTS[4:8], True), (TEXTS[2:9], False)]
    calls = []
    forward = m.tower_forward
    m.tower_forward = lambda *a, **k: calls.append(1) or forward(*a, **k)
    scorers = [TextScorer(m, mem) for mem in memories] + [TextScorer(m, mem) for mem in memories]
    calls.clear()
    alone = [sc(texts, ended) for sc, (texts, ended) in zip(scorers[3:], requests)]
    n_alone = len(calls)
    calls.clear()
    together = score_together([(sc, texts, ended) for sc, (texts, ended) in zip(scorers, requests)])
    assert len(calls) < n_alone, (len(calls), n_alone)
    for got, want, mem, (texts, ended) in zip(together, alone, memories, requests):
        torch.testing.assert_close(torch.tensor(got), torch.tensor(want), atol=1e-5, rtol=0)
        torch.testing.assert_close(torch.tensor(got), torch.tensor(scores_from_scratch(m, mem, texts, ended)),
                                   atol=1e-4, rtol=0)
    other = _zip(smollm2_tokenizer, ())
    with pytest.raises(ValueError, match="same zip"):
        score_together([(scorers[0], ["a"], False), (TextScorer(other, _memory(other)), ["a"], False)])


def test_rows_are_batched_by_the_number_of_their_new_tokens(smollm2_tokenizer):
    """Rows of two new tokens are not run beside a row of twenty (mostly padding): batches group rows whose
    suffixes are within 1.5x of each other, at most batch_size rows each; rows of one new token run in none."""
    m = _zip(smollm2_tokenizer, ())
    scorer = TextScorer(m, _memory(m), batch_size=3)
    scorer(["the cat", "a dog"], False)
    long = "the cat " + " ".join(["sat on the mat"] * 5)
    texts = ["the cat sat down", "the cat ran off", "a dog ran off", "a dog sat down", long, "the cat sat", "a dog ran"]
    want = scores_from_scratch(m, _memory(m), texts, False)
    seen = []
    forward = m.tower_forward
    m.tower_forward = lambda modality, ids, *a, **k: seen.append(tuple(ids.shape)) or forward(modality, ids, *a, **k)
    torch.testing.assert_close(torch.tensor(scorer(texts, False)), torch.tensor(want), atol=1e-4, rtol=0)
    two = [len(smollm2_tokenizer(w, add_special_tokens=False).input_ids) for w in (" sat down", " ran off", " sat")]
    assert two == [2, 2, 1] and seen == [(3, 2), (1, 2), (1, seen[2][1])] and seen[2][1] > 10, seen


def test_bounds_lie_between_a_texts_score_and_its_kept_prefix_score_and_run_no_forward(smollm2_tokenizer):
    """`TextScorer.bounds`: the kept prefix's score plus its next token's log-prob; exact for a text one token past a
    kept one, never below the text's score nor above its kept prefix's; no forward."""
    m = _zip(smollm2_tokenizer, (7, 9))
    memory = _memory(m)
    scorer = TextScorer(m, memory)
    scorer(["the cat", "a dog"], False)
    texts = ["the cat sat", "the cat zzqx blorp", "a dog ran off", "don't stop", "the cat", ""]
    kept = ["the cat", "the cat", "a dog", "", "the cat", ""]
    seen = []
    forward = m.tower_forward
    m.tower_forward = lambda *a, **k: seen.append(1) or forward(*a, **k)
    got = scorer.bounds(texts, False)
    assert seen == []
    m.tower_forward = forward
    exact, upper = (scores_from_scratch(m, memory, ts, False) for ts in (texts, kept))
    for t, b, s, u in zip(texts, got, exact, upper):
        assert s - 1e-4 <= b <= u + 1e-4, (t, b, s, u)
    assert got[0] == pytest.approx(exact[0], abs=1e-4) and got[1] > exact[1] + 1e-3  # " sat" is one token, "zzqx" not
    assert scorer.bounds(["the cat"], True) == pytest.approx(scores_from_scratch(m, memory, ["the cat"], True), abs=1e-4)
