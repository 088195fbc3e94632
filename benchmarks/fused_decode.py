"""How much does the KV cache save the decoder's word scoring in fused CTC decoding?

Fused decoding (``zipper eval --fusion``, zipper/ctc_beam.py) asks the zipped text decoder, frame
after frame, for the log-prob of word sequences that grow one word at a time. This benchmark replays
that workload on one zip, two ways, timed interleaved:

* **cached**: ``zipper.text_scorer.TextScorer`` (what the search uses): each text runs only the
  tokens past its longest already-scored prefix, on that prefix's KV cache;
* **from scratch**: ``scores_from_scratch``: every text runs whole, batched, no cache.

The workload, per utterance (a fresh scorer, random speech units of ``--speech-seconds``): for each
word of a sentence, ``--beam`` texts that extend the best sentence so far by that word or by a
misspelling of it (one letter changed), as the search's beams do; at the end the same with EOS. The
scores of the two ways must agree (asserted, |diff| < 1e-3); reports seconds per utterance of each and
the per-round ratio. Towers: SmolLM2-135M text + the base speech tower (``--tiny``: tiny towers with a
letter tokenizer), zipped as the character-CTC ASR recipe (cross-attention every 4th text layer).

    python -m benchmarks.fused_decode              # real towers
    python -m benchmarks.fused_decode --smoke      # seconds, tiny towers (CI)
"""
from __future__ import annotations

import random

import torch

from benchmarks import common
from benchmarks.ctc_head import RECIPE_ZIP
from zipper import Segment, ZipperModel
from zipper.text_scorer import TextScorer, scores_from_scratch

NAME = "fused_decode"
SENTENCES = [  # dev-like sentences (quotations); the misspellings come from a seeded generator
    "a lot of people are afraid of heights",
    "the priests sold the better pennyworths",
    "our delightful task to prune these growing plants and tend these flowers",
    "and join with thee calm peace and quiet",
    "there is no substitute for hard work",
    "he that is slow to anger is better than the mighty",
]


class _LetterTokenizer:
    """text -> one id per character (3 + its code point mod 500): lets the tiny text tower stand in."""

    def __call__(self, text, add_special_tokens=False):
        return type("Encoding", (), {"input_ids": [3 + ord(c) % 500 for c in text]})()


def parse_args(argv=None):
    p = common.make_parser(__doc__.split("\n")[0])
    p.add_argument("--beam", type=int, default=8, help="texts scored per word (the search's beam)")
    p.add_argument("--speech-seconds", type=float, default=4.0, help="speech per utterance, seconds")
    p.add_argument("--units-per-second", type=int, default=50, help="speech units per second (whisper-proj-joe: 50)")
    p.add_argument("--utterances", type=int, default=len(SENTENCES), help="utterances (sentences) per round")
    p.set_defaults(warmup=1, steps=3)
    args = p.parse_args(argv)
    common.setup(args, argv)
    if args.smoke:
        args.beam, args.speech_seconds, args.utterances = 3, 1.0, 2
    return args


def workload(sentence: str, beam: int, rng: random.Random) -> list[tuple[list[str], bool]]:
    """The (texts, ended) calls of one utterance: per word, the sentence so far extended by the word and
    ``beam - 1`` misspellings of it; then the whole sentence and its variants with EOS."""
    calls, done = [], []
    for word in sentence.split():
        variants = [word] + [_misspell(word, rng) for _ in range(beam - 1)]
        calls.append(([" ".join(done + [v]) for v in variants], False))
        done.append(word)
    calls.append(([" ".join(done[:-1] + [v]) for v in variants], True))
    return calls


def _misspell(word: str, rng: random.Random) -> str:
    i = rng.randrange(len(word))
    return word[:i] + rng.choice("abcdefghijklmnopqrstuvwxyz") + word[i + 1:]


def main(argv=None) -> dict:
    args = parse_args(argv)
    speech, text = common.speech_tower(args.tiny, seed=args.seed), common.text_tower(args.tiny)
    if text.tokenizer is None:
        text.tokenizer = _LetterTokenizer()
    torch.manual_seed(args.seed)
    model = ZipperModel.from_towers([speech, text], directions=["speech->text"], **RECIPE_ZIP).eval()
    g, rng = torch.Generator().manual_seed(args.seed), random.Random(args.seed)
    n_units = int(round(args.speech_seconds * args.units_per_second))
    utts = []
    for sentence in (SENTENCES * args.utterances)[: args.utterances]:
        _, history, _ = model.run_segments([Segment("speech", common.random_ids(speech, 1, n_units, g))])
        utts.append((model.memory_for("text", history), workload(sentence, args.beam, rng)))

    scores: dict[str, list[float]] = {}

    def replay(name: str) -> None:
        out = []
        for memory, calls in utts:
            score = TextScorer(model, memory) if name == "cached" else (
                lambda texts, ended, memory=memory: scores_from_scratch(model, memory, texts, ended))
            for texts, ended in calls:
                out += score(texts, ended)
        scores[name] = out

    with torch.no_grad():
        times = common.interleaved({v: (lambda v=v: replay(v)) for v in ("cached", "scratch")}, args.warmup, args.steps)
    diff = max(abs(a - b) for a, b in zip(scores["cached"], scores["scratch"]))
    assert diff < 1e-3, f"cached and from-scratch scores differ by {diff}"
    per_utt = {v: [t / len(utts) for t in times[v]] for v in times}
    ratio = common.ratios(times["scratch"], times["cached"])
    n_texts = sum(len(t) for _, calls in utts for t, _ in calls)
    rows = [{"scorer": v, "s_per_utterance": common.fmt_stat(common.summarize(per_utt[v]), unit=" s")}
            for v in ("cached", "scratch")]
    common.print_table(rows, ["scorer", "s_per_utterance"],
                       title=f"{len(utts)} utterances, {n_texts} texts, beam {args.beam}, {n_units} speech units")
    result = {"per_utterance_s": {v: common.summarize(per_utt[v]) for v in per_utt},
              "scratch_over_cached": ratio, "max_abs_diff": diff,
              "setup": {"utterances": len(utts), "texts": n_texts, "beam": args.beam, "speech_len": n_units,
                        "text_layers": text.model.config.num_hidden_layers, "threads": torch.get_num_threads()}}
    headline = (f"word scoring with the KV cache {ratio['median']:.2f}x faster than from scratch "
                f"({common.summarize(per_utt['cached'])['median']:.2f} vs "
                f"{common.summarize(per_utt['scratch'])['median']:.2f} s an utterance; {n_texts} texts, "
                f"beam {args.beam}, same scores within {diff:.1e})")
    print(headline)
    common.write_results(NAME, args, result, headline)
    return result


if __name__ == "__main__":
    main()
