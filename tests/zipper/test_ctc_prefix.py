"""CTC prefix scores and the two ways of decoding with a CTC head: label-synchronous joint CTC/attention
beam search (zipper/ctc_prefix.py, zipper/generation.py) and character prefix beam search with the
decoder scoring words (zipper/ctc_beam.py). The scores are checked against sums over every CTC path."""
from __future__ import annotations

import itertools
import zlib

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tests.conftest import open_gates, tiny_tower
from zipper import Segment, ZipperModel
from zipper.ctc_beam import ctc_prefix_beam_search
from zipper.ctc_prefix import CTCPrefixScorer, JointCTCScorer


def _log_probs(T, S, seed, scale=2.0):
    g = torch.Generator().manual_seed(seed)
    return torch.log_softmax(torch.randn(T, S + 1, generator=g, dtype=torch.float64) * scale, -1).numpy()


def _labelling_probs(x):
    """Every collapsed CTC output of log-probs x (T, S + 1; blank last) -> its log-probability."""
    T, blank = x.shape[0], x.shape[1] - 1
    out: dict[tuple, list] = {}
    for path in itertools.product(range(x.shape[1]), repeat=T):
        label = tuple(s for i, s in enumerate(path) if s != blank and (i == 0 or path[i - 1] != s))
        out.setdefault(label, []).append(sum(x[t, s] for t, s in enumerate(path)))
    return {k: float(np.logaddexp.reduce(v)) for k, v in out.items()}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_prefix_and_full_scores_equal_sums_over_all_paths(seed):
    x = _log_probs(T=6, S=3, seed=seed)
    labels = _labelling_probs(x)
    scorer = CTCPrefixScorer(x)
    for n in range(5):
        for g in itertools.product(range(3), repeat=n):
            starting = [v for k, v in labels.items() if k[:n] == g]
            want_prefix = float(np.logaddexp.reduce(starting)) if starting else -np.inf
            want_full = labels.get(g, -np.inf)
            for got, want in ((scorer.prefix(g), want_prefix), (scorer.full(g), want_full)):
                assert got == pytest.approx(want, abs=1e-9) if np.isfinite(want) else got == -np.inf
    g = (0, 2, 2, 1)  # the full score is torch's CTC loss, repeats included
    want = -F.ctc_loss(torch.tensor(x)[:, None], torch.tensor([g]), torch.tensor([6]), torch.tensor([4]),
                       blank=3, reduction="sum").item()
    assert scorer.full(g) == pytest.approx(want, abs=1e-9)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_zero_probability_symbol_gives_the_sums_over_all_paths_not_nan(seed):
    """A log-prob of -inf (a symbol or the blank impossible at one frame) is clamped, not propagated as NaN."""
    x = _log_probs(T=5, S=2, seed=seed)
    x[1, 0] = x[3, 2] = -np.inf  # symbol 0 impossible at frame 1, the blank at frame 3
    x = x - np.logaddexp.reduce(x, axis=1, keepdims=True)
    labels = _labelling_probs(x)
    scorer = CTCPrefixScorer(x)
    for g in [(0,), (1,), (0, 1), (1, 0), (0, 0), (0, 1, 0)]:
        starting = [v for k, v in labels.items() if k[:len(g)] == g]
        assert scorer.prefix(g) == pytest.approx(float(np.logaddexp.reduce(starting)), abs=1e-9)
        assert scorer.full(g) == pytest.approx(labels[g], abs=1e-9)


def test_prefix_scorer_refuses_bad_input():
    with pytest.raises(ValueError, match="T > 0"):
        CTCPrefixScorer(np.zeros((0, 4)))
    with pytest.raises(ValueError, match="out of range"):
        CTCPrefixScorer(_log_probs(4, 3, 0)).prefix([3])


def test_a_second_symbol_less_token_in_a_row_is_refused():
    lp = torch.tensor(_log_probs(8, 3, 0))[None]  # (1, T, 4)
    to_symbols = {(): [], (5,): [0], (5, 9): [0], (5, 9, 9): [0], (5, 9, 6): [0, 1]}
    scorer = JointCTCScorer(lp, torch.ones(1, 8, dtype=torch.bool), lambda t: to_symbols[tuple(t)], 0.5)
    assert scorer.score(0, [5, 9], ended=False) == scorer.scorers[0].prefix([0])  # one punctuation mark: free
    assert scorer.score(0, [5, 9, 9], ended=False) == -np.inf  # a run of them: refused
    assert scorer.score(0, [5, 9, 6], ended=False) == scorer.scorers[0].prefix([0, 1])
    assert scorer.score(0, [5, 9, 9], ended=True) == scorer.scorers[0].full([0])  # EOS ends it either way


def test_a_running_hypothesis_is_a_prefix_of_its_final_spelling():
    """A text being written maps to characters that start its final normalised spelling: its last word is
    not normalised yet ("st" of "stumped" is not "saint"), a number is held back until it ends."""
    from zipper.ctc import char_targets, chars_text, running_char_targets

    assert chars_text(running_char_targets("He st")[0]) == "he st"
    assert running_char_targets("It was 18") == (char_targets(["it was"])[0].tolist(), True)
    assert chars_text(running_char_targets("Mr. Smith ca")[0]) == "mister smith ca"  # whole words normalised
    for sentence in ["He stumped the drudgery, in 1865 and 21st of May.", "Don't dread the stoat: it was 3.5 m!"]:
        final = char_targets([sentence])[0].tolist()
        for cut in range(len(sentence) + 1):
            ids, pending = running_char_targets(sentence[:cut])
            assert final[:len(ids)] == ids, sentence[:cut]
            assert pending == any(c.isdigit() for c in sentence[:cut].split(" ")[-1])


def test_a_number_being_written_is_not_a_run_of_symbol_less_tokens():
    lp = torch.tensor(_log_probs(8, 3, 0))[None]  # (1, T, 4)
    running = {(5,): ([0], False), (5, 7): ([0], True), (5, 7, 7): ([0], True), (5, 9): ([0], False),
               (5, 9, 9): ([0], False)}
    scorer = JointCTCScorer(lp, torch.ones(1, 8, dtype=torch.bool), lambda t: [0], 0.5,
                            lambda t: running[tuple(t)])
    assert scorer.score(0, [5, 7, 7], ended=False) == scorer.scorers[0].prefix([0])  # "1", "18", ...: pending
    assert scorer.score(0, [5, 9, 9], ended=False) == -np.inf  # "!!": refused as before


# ---- joint CTC/attention beam search (generate(..., ctc_weight=w)) on a tiny zip with a token CTC head ----

def _token_ctc_zip():
    speech = tiny_tower("llama", "speech", vocab=40, hidden=32, layers=2, seed=1, init_std=0.4)
    text = tiny_tower("llama", "text", vocab=56, hidden=32, layers=2, seed=2, init_std=0.4)
    torch.manual_seed(3)
    m = ZipperModel.from_towers([speech, text], directions=["speech->text"], cross_attention_interval=[1, 1],
                                ctc_directions=["speech->text"], ctc_weight=0.3)
    open_gates(m, 0.5)
    return m.eval()


def _prompt():
    ids = torch.randint(3, 40, (2, 12), generator=torch.Generator().manual_seed(0))
    return [Segment("speech", ids, torch.tensor([[1] * 12, [1] * 9 + [0] * 3]))]


def test_joint_search_with_a_vanishing_ctc_weight_is_the_plain_beam_search():
    m = _token_ctc_zip()
    plain = m.generate(_prompt(), ["text"], max_new_tokens=8, num_beams=3)[0]
    joint = m.generate(_prompt(), ["text"], max_new_tokens=8, num_beams=3, ctc_weight=1e-9)[0]
    assert torch.equal(plain.input_ids, joint.input_ids)


def test_joint_search_with_full_ctc_weight_follows_the_ctc_head():
    """w = 1: among the decoder's candidates the search keeps the CTC-likeliest prefix, so its output
    scores at least as well under CTC as the plain beam's."""
    m = _token_ctc_zip()
    prompt = _prompt()
    with torch.no_grad():
        _, history, _ = m.run_segments(prompt)
        log_probs = m.ctc_log_probs("speech", "text", history[0])
    plain = m.generate(prompt, ["text"], max_new_tokens=6, num_beams=3)[0]
    joint = m.generate(prompt, ["text"], max_new_tokens=6, num_beams=3, ctc_weight=1.0)[0]
    for b in range(2):
        scorer = CTCPrefixScorer(log_probs[b][history[0].mask[b].bool()].double().numpy())

        def score(seg):
            return scorer.prefix(seg.input_ids[b][seg.attention_mask[b].bool()].tolist())
        assert score(joint) >= score(plain) - 1e-9


def test_joint_search_refuses_bad_requests():
    m = _token_ctc_zip()
    with pytest.raises(ValueError, match=r"ctc_weight must be in \[0, 1\]"):
        m.generate(_prompt(), ["text"], ctc_weight=1.5)
    with pytest.raises(ValueError, match="no sampling"):
        m.generate(_prompt(), ["text"], ctc_weight=0.3, do_sample=True)
    plain = ZipperModel.from_towers([tiny_tower("llama", "speech", vocab=40, seed=1),
                                     tiny_tower("llama", "text", vocab=56, seed=2)], directions=["speech->text"])
    with pytest.raises(ValueError, match="CTC head"):
        plain.generate(_prompt(), ["text"], ctc_weight=0.3)


# ---- character prefix beam search with a word scorer (zipper/ctc_beam.py) ----

def test_prefix_beam_search_without_a_scorer_finds_the_likeliest_labelling():
    for seed in range(3):
        x = _log_probs(T=5, S=3, seed=seed, scale=1.0)
        labels = _labelling_probs(x)
        best = max(labels, key=labels.get)
        got = ctc_prefix_beam_search(x, "abc", lambda texts, ended: [0.0] * len(texts), beam=10_000,
                                     alpha=0.0, beta=0.0, prune=-np.inf)
        assert got == "".join("abc"[i] for i in best)


def test_prefix_beam_search_with_spaces_finds_the_likeliest_text():
    """With a space symbol, "ab" and "ab " (a trailing space) are one text: the search adds their
    probabilities, as a sum over every CTC path of its stripped, space-squeezed text does."""
    for seed in range(40):
        x = _log_probs(T=5, S=3, seed=seed, scale=1.5)
        texts: dict[str, list[float]] = {}
        for label, lp in _labelling_probs(x).items():
            texts.setdefault(" ".join("".join("ab "[i] for i in label).split()), []).append(lp)
        probs = {t: float(np.logaddexp.reduce(v)) for t, v in texts.items()}
        got = ctc_prefix_beam_search(x, "ab ", lambda t, e: [0.0] * len(t), beam=100_000,
                                     alpha=0.0, beta=0.0, prune=-np.inf)
        assert probs[got] == pytest.approx(max(probs.values()), abs=1e-9), seed


def test_a_texts_ctc_probability_is_the_sum_over_its_paths():
    """ctc_text_log_prob counts what the search counts for a text (ends and doubled spaces free), unpruned."""
    from zipper.ctc_beam import ctc_text_log_prob

    for seed in range(20):
        x = _log_probs(T=5, S=3, seed=seed, scale=1.5)
        texts: dict[str, list[float]] = {}
        for label, lp in _labelling_probs(x).items():
            texts.setdefault(" ".join("".join("ab "[i] for i in label).split()), []).append(lp)
        for text, lps in texts.items():
            assert ctc_text_log_prob(x, "ab ", f"  {text}  ") == pytest.approx(np.logaddexp.reduce(lps), abs=1e-9)
        assert ctc_text_log_prob(x, "ab ", "ab ab ab") == -np.inf  # six letters do not fit in five frames
    with pytest.raises(ValueError, match=r"cannot spell: \['c'\]"):
        ctc_text_log_prob(x, "ab ", "abc")


def test_the_search_never_returns_a_text_scored_below_the_ctc_best_path():
    """A narrow beam can lose the best path's words (a run-on "ababab" that pays its unknown letters only
    after the spaced texts were pruned); the best path is scored as a final text too, so the search's answer
    scores at least as well under the search's own objective."""
    from zipper.ctc_beam import Lexicon, best_path_text, fused_text_score

    lexicon = Lexicon(["ab", "ba", "a"])
    kw = dict(alpha=1.0, beta=0.5, lexicon=lexicon, unk_penalty=-2.0, unk_letter_penalty=-0.5)

    def scorer(texts, ended):  # a fixed pseudo-random word score per text
        return [-4.0 * zlib.crc32(f"{t}|{ended}".encode()) / 2**32 for t in texts]

    for seed in range(40):
        x = _log_probs(T=14, S=3, seed=seed, scale=3.0)
        got = ctc_prefix_beam_search(x, "ab ", scorer, beam=2, **kw)
        path = best_path_text(x, "ab ")
        assert fused_text_score(x, "ab ", got, scorer, **kw) >= fused_text_score(x, "ab ", path, scorer, **kw) - 1e-9, seed
    x = _log_probs(T=6, S=3, seed=0, scale=3.0)  # unpruned, the search's answer is the best of all texts
    wide = ctc_prefix_beam_search(x, "ab ", scorer, beam=10**6, prune=-np.inf, **kw)
    every = {" ".join("".join(t).split()) for n in range(7) for t in itertools.product("ab ", repeat=n)}
    assert fused_text_score(x, "ab ", wide, scorer, **kw) == pytest.approx(
        max(fused_text_score(x, "ab ", t, scorer, **kw) for t in every), abs=1e-9)


def test_the_word_scorer_picks_among_the_ctc_spellings():
    """CTC slightly prefers "ab a" to "ab b"; a scorer that knows only the word "b" after "ab" flips it."""
    blank = [-9.0, -9.0, -9.0, 0.0]
    frames = [[0.0, -9, -9, -9], [-9, 0.0, -9, -9], [-9, -9, 0.0, -9], [np.log(0.6), np.log(0.4), -9, -9]]
    x = np.log(np.exp(np.array(frames + [blank], dtype=np.float64)) /
               np.exp(np.array(frames + [blank], dtype=np.float64)).sum(-1, keepdims=True))

    def scorer(texts, ended):
        return [0.0 if t in ("", "ab", "ab b") else -50.0 for t in texts]
    assert ctc_prefix_beam_search(x, "ab ", lambda t, e: [0.0] * len(t), alpha=0.0, beta=0.0) == "ab a"
    assert ctc_prefix_beam_search(x, "ab ", scorer, alpha=1.0, beta=0.0) == "ab b"
    with pytest.raises(ValueError, match="log_probs must be"):
        ctc_prefix_beam_search(x[:, :3], "ab ", scorer)


def test_lexicon_knows_words_with_clitics_and_their_prefixes(smollm2_tokenizer):
    from zipper.ctc import CTC_CHARS
    from zipper.ctc_beam import Lexicon, _unknown

    lex = Lexicon.from_tokenizer(smollm2_tokenizer, CTC_CHARS)
    assert len(lex.words) > 10_000 and all(set(w) <= set(CTC_CHARS) for w in lex.words)
    assert lex.known_word("people") and lex.known_word("don't") and lex.known_word("it's")
    assert lex.known_prefix("peop") and lex.known_prefix("don'") and not lex.known_prefix("xqzv")
    assert not lex.known_word("peopl") and not lex.known_word("people'q")
    assert _unknown("a lot of peopl", lex, -10, -1) == 0
    # "lotx": one letter past "lot"; the partial "xqz": two letters past "x" (as in "xbox")
    assert _unknown("a lotx of xqz", lex, -10, -1) == -10 - 1 - 10 - 2
    assert _unknown("anything at all", None, -10, -1) == 0


def test_an_unknown_letter_run_pays_per_letter_and_loses_to_known_words():
    """CTC hears "ab ab ab" with each space less likely than a blank. With only a per-word unknown
    penalty the unsplit run "ababab" costs one penalty and saves two unlikely spaces, so it wins; the
    per-letter penalty makes it pay for its four letters past "ab", and the known words win."""
    from zipper.ctc_beam import Lexicon

    sym = {"a": 0, "b": 1, " ": 2}
    frames = [{"a": 0.9}, {"b": 0.9}, {" ": 0.3}, {"a": 0.9}, {"b": 0.9}, {" ": 0.3}, {"a": 0.9}, {"b": 0.9}]
    x = np.full((len(frames), 4), 1e-3)
    for t, f in enumerate(frames):
        for c, p in f.items():
            x[t, sym[c]] = p
        x[t, 3] = 1 - sum(f.values())  # the rest is blank
    x = np.log(x / x.sum(-1, keepdims=True))

    def flat(texts, ended):
        return [0.0] * len(texts)
    kw = dict(alpha=0.0, beta=0.0, lexicon=Lexicon(["ab"]), unk_penalty=-1.0, prune=-np.inf)
    assert ctc_prefix_beam_search(x, "ab ", flat, unk_letter_penalty=0.0, **kw) == "ababab"
    assert ctc_prefix_beam_search(x, "ab ", flat, unk_letter_penalty=-1.0, **kw) == "ab ab ab"


def test_fused_decoding_runs_on_a_character_zip_and_refuses_a_token_head(smollm2_tokenizer, monkeypatch):
    from tests.zipper.test_ctc import _chars_zip
    from zipper.config import ConfigError
    from zipper.ctc import CTC_CHARS
    from zipper.recipe import RecipeConfig
    from zipper.tasks import fused_transcribe_units

    from towers.units import UnitTokenizer

    units = [torch.randint(0, 30, (20,), generator=torch.Generator().manual_seed(i)) for i in range(2)]
    model = _chars_zip(smollm2_tokenizer).eval()
    model.tower("speech").tokenizer = UnitTokenizer(30)  # units 0..29 -> ids 3..32
    texts = fused_transcribe_units(model, units, beam=2, words=["zipper"])  # a known word more
    assert len(texts) == 2 and all(set(t) <= set(CTC_CHARS) for t in texts)
    # searched together (their decoder requests in shared forwards) as one by one
    assert fused_transcribe_units(model, units, beam=2, words=["zipper"], batch_size=1) == texts
    # and as the search before first-token bounds and one-token reads, which only save it work
    from zipper import ctc_beam, text_scorer

    search, together = ctc_beam.prefix_beam_search, text_scorer.score_together
    monkeypatch.setattr(ctc_beam, "prefix_beam_search", lambda *a, **k: search(*a, **{**k, "bounds": False}))
    monkeypatch.setattr(text_scorer, "score_together", lambda *a, **k: together(*a, **k, read_one_token=False))
    assert fused_transcribe_units(model, units, beam=2, words=["zipper"]) == texts
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        fused_transcribe_units(model, units, batch_size=0)
    with pytest.raises(ValueError, match="character CTC head"):
        fused_transcribe_units(_token_ctc_zip(), units)
    with pytest.raises(ConfigError, match="eval_fusion"):
        RecipeConfig(task="asr", ctc_weight=0.3, eval_fusion=True)  # a token head
    with pytest.raises(ConfigError, match="fusion_beam"):
        RecipeConfig(task="asr", ctc_weight=0.3, ctc_units="chars", eval_fusion=True, fusion_beam=0)
    for bad in ({"fusion_alpha": -0.5}, {"fusion_alpha": float("nan")}, {"fusion_beta": float("inf")}):
        with pytest.raises(ConfigError, match="fusion_(alpha|beta) must be finite"):
            RecipeConfig(task="asr", ctc_weight=0.3, ctc_units="chars", eval_fusion=True, **bad)
    assert RecipeConfig(task="asr", ctc_weight=0.3, ctc_units="chars", fusion_beta=-1.0).fusion_beta == -1.0


class Vocab:
    def __init__(self, tokens):
        self.tokens = tokens

    def get_vocab(self):
        return {t: i for i, t in enumerate(self.tokens)}


def test_lexicon_reads_sentencepiece_vocabularies_and_refuses_one_without_words():
    """Llama/Mistral/Gemma vocabularies mark a word's start with U+2581, not U+0120; a vocabulary with
    neither is a clear error, not a crash inside the search."""
    from zipper.ctc import CTC_CHARS
    from zipper.ctc_beam import Lexicon

    lex = Lexicon.from_tokenizer(Vocab(["\u2581the", "\u2581Cat", "s", "\u2581", "<s>"]), CTC_CHARS)
    assert lex.words == {"the", "cat"} and lex.letters_past("cats", complete=True) == 1
    with pytest.raises(ValueError, match="no whole-word tokens"):
        Lexicon.from_tokenizer(Vocab(["a", "b", "<s>"]), CTC_CHARS)
    assert Lexicon([]).letters_past("xyz", complete=True) == 3


def test_extra_words_are_known_and_word_lists_are_read_with_clear_errors(tmp_path):
    """A word the tower has no whole-word token for ("starship") is unknown until a word list or the corpus's
    training text names it; a word list is spelled as the CTC head spells (normalised), and a missing,
    binary or empty one is a clear error."""
    from zipper.ctc import CTC_CHARS
    from zipper.ctc_beam import Lexicon, _unknown, read_word_list

    vocab = Vocab(["\u0120the", "\u0120star", "ship"])
    assert _unknown("the starship", Lexicon.from_tokenizer(vocab, CTC_CHARS), -10, -1) == -10 - 4
    lex = Lexicon.from_tokenizer(vocab, CTC_CHARS, ["Starship", "x-ray", "42"])  # not CTC_CHARS: left out
    assert lex.words == {"the", "star", "starship"} and _unknown("the starship", lex, -10, -1) == 0
    (tmp_path / "terms.txt").write_text("# our terms\nCOVID-19  Zayats's\n\nstarship # a ship\n")
    assert read_word_list(tmp_path / "terms.txt") == ["covid", "nineteen", "zayats's", "starship"]
    with pytest.raises(FileNotFoundError, match="no such file"):
        read_word_list(tmp_path / "none.txt")
    (tmp_path / "bin.txt").write_bytes(b"\xff\xfe\x00abc")
    with pytest.raises(ValueError, match="not UTF-8"):
        read_word_list(tmp_path / "bin.txt")
    (tmp_path / "empty.txt").write_text("# nothing\n  \n")
    with pytest.raises(ValueError, match="no words"):
        read_word_list(tmp_path / "empty.txt")


def _word_log_probs(texts, ended):
    """A fixed pseudo-random log-prob per word given the words before it: a text never scores above its first
    words, as the decoder's log-probs do."""
    def score(t):
        words = t.split()
        return sum(-3.0 * zlib.crc32(" ".join(words[:i + 1]).encode()) / 2**32 for i in range(len(words)))
    return [score(t) - (1.0 if ended else 0.0) for t in texts]


@pytest.mark.parametrize("beam", [1, 3, 8])
def test_the_lazy_search_keeps_the_beams_of_scoring_every_candidate(beam):
    """With a scorer whose scores never rise as a text grows (log-probs), ranking new words by their first
    words' score and scoring only those that may enter the beam returns what scoring every candidate does,
    having asked for fewer texts; asking first for tighter upper bounds (any value between a text's score and its
    first words', as `TextScorer.bounds` gives) returns it too, having asked for fewer scores still."""
    from zipper.ctc_beam import Lexicon

    kw = dict(beam=beam, alpha=0.8, beta=0.5, lexicon=Lexicon(["ab", "ba", "a", "bab"]), unk_penalty=-2.0,
              unk_letter_penalty=-0.5)

    def bound(texts, ended):  # somewhere between the score and the first words' score, fixed per text
        assert not ended
        first = _word_log_probs([" ".join(t.split()[:-1]) for t in texts], False)
        exact = _word_log_probs(texts, False)
        return [f + (s - f) * zlib.crc32(t.encode()) / 2**32 for t, s, f in zip(texts, exact, first)]

    asked = {"all": 0, "lazy": 0, "bounds": 0}
    for seed in range(30):
        x = _log_probs(T=16, S=3, seed=seed, scale=2.0)
        got = {}
        for mode in asked:
            def scorer(texts, ended, mode=mode):
                asked[mode] += len(texts)
                return _word_log_probs(texts, ended)
            got[mode] = ctc_prefix_beam_search(x, "ab ", scorer, lazy=mode != "all",
                                               bound_texts=bound if mode == "bounds" else None, **kw)
        assert got["lazy"] == got["all"] == got["bounds"], seed
    assert asked["bounds"] < asked["lazy"] < asked["all"], asked
    x = _log_probs(T=16, S=3, seed=0, scale=2.0)  # a negative alpha turns the bound around: every text is scored
    assert ctc_prefix_beam_search(x, "ab ", _word_log_probs, **{**kw, "alpha": -0.5}) == \
        ctc_prefix_beam_search(x, "ab ", _word_log_probs, lazy=False, **{**kw, "alpha": -0.5})
