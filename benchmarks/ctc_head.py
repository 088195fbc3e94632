"""What does the auxiliary CTC head cost per ASR training step: SmolLM2's tokens vs characters?

The zipped ASR step of recipes 2h/2i ([speech, text], loss on text; cross-attention-only blocks, speech
tower trained, text tower frozen; forward + backward + AdamW) on the same towers and segments, three ways,
timed interleaved:

* **no CTC**: the plain zip;
* **token CTC** (``ctc_units="tokens"``): the head scores the text tower's output embeddings (SmolLM2:
  49,152) at every speech frame, the configuration of the recipes before the ninth session;
* **char CTC** (``ctc_units="chars"``): the head emits the 28 characters of ``zipper.ctc.CTC_CHARS``.

Segments are random ids; the character targets are the decoded text tokens, as in training. With
``--tiny``/``--smoke`` the tiny text tower has no tokenizer, so a stand-in decodes each id as one letter
(timing only). Reports each step's median [IQR] and the per-round ratios to the plain zip.

    python -m benchmarks.ctc_head                  # SmolLM2-135M text + base speech tower, 50 units/s
    python -m benchmarks.ctc_head --smoke          # seconds, tiny towers (CI)
"""
from __future__ import annotations

import torch

from benchmarks import common
from benchmarks.train_step import make_step
from zipper import Segment, ZipperModel

NAME = "ctc_head"
VARIANTS = ("none", "tokens", "chars")
# the zip of the ASR recipes 2h/2i: cross-attention only, every speech layer and every 4th text layer,
# the speech tower trained, the text tower frozen
RECIPE_ZIP = dict(cross_attention_interval=[1, 4], ffn_mult=0, input_projection=False, frozen=[False, True],
                  projection_layers=1)


class _LettersTokenizer:
    """decode(ids) -> one letter per id: lets the tiny text tower stand in for a real one (timing only)."""

    def decode(self, ids, skip_special_tokens: bool = True) -> str:
        return "".join(chr(97 + int(i) % 26) if int(i) % 7 else " " for i in ids)


def parse_args(argv=None):
    p = common.make_parser(__doc__.split("\n")[0])
    p.add_argument("--batch", type=int, default=8, help="batch size (the recipes' 8)")
    p.add_argument("--speech-seconds", type=float, default=4.0, help="speech segment length in seconds")
    p.add_argument("--units-per-second", type=int, default=50, help="speech units per second (whisper-proj-joe: 50)")
    p.add_argument("--text-tokens", type=int, default=24, help="text segment length in tokens")
    args = p.parse_args(argv)
    common.setup(args, argv)
    if args.smoke:
        args.batch, args.speech_seconds = 2, 1.0
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    speech, text = common.speech_tower(args.tiny, seed=args.seed), common.text_tower(args.tiny)
    if text.tokenizer is None:
        text.tokenizer = _LettersTokenizer()
    g = torch.Generator().manual_seed(args.seed)
    n_speech = int(round(args.speech_seconds * args.units_per_second))
    segments = [Segment("speech", common.random_ids(speech, args.batch, n_speech, g)),
                Segment("text", common.random_ids(text, args.batch, args.text_tokens, g), loss=True)]
    steps = {}
    for v in VARIANTS:  # one zip per variant on the same towers (each zip's hooks ignore the others' calls)
        ctc = {} if v == "none" else {"ctc_directions": ["speech->text"], "ctc_weight": 0.3, "ctc_units": v}
        torch.manual_seed(args.seed)
        model = ZipperModel.from_towers([speech, text], directions=["speech->text"], **RECIPE_ZIP, **ctc)
        steps[v] = make_step(model, lambda model=model: model(segments).loss)
    times = common.interleaved(steps, args.warmup, args.steps)
    rows = [{"variant": v, "step_s": common.fmt_stat(common.summarize(times[v]), unit=" s"),
             "ratio_vs_none": common.fmt_stat(common.ratios(times[v], times["none"]), unit="x", digits=2),
             "trainable_params": steps[v].n_params} for v in VARIANTS]
    common.print_table(rows, ["variant", "step_s", "ratio_vs_none", "trainable_params"],
                       title=f"ASR step, batch {args.batch}, {n_speech} speech units, {args.text_tokens} text tokens")
    result = {"steps": {v: common.summarize(times[v]) for v in VARIANTS},
              "ratios": {f"{v}_over_none": common.ratios(times[v], times["none"]) for v in VARIANTS[1:]}
              | {"tokens_over_chars": common.ratios(times["tokens"], times["chars"])},
              "trainable_params": {v: steps[v].n_params for v in VARIANTS},
              "setup": {"batch": args.batch, "speech_len": n_speech, "text_len": args.text_tokens,
                        "text_vocab": text.vocab_size, "threads": torch.get_num_threads()}}
    r = result["ratios"]
    headline = (f"token CTC step {r['tokens_over_none']['median']:.2f}x the plain zip's, char CTC "
                f"{r['chars_over_none']['median']:.2f}x; token/char {r['tokens_over_chars']['median']:.2f}x "
                f"(batch {args.batch}, {n_speech} units, text vocab {text.vocab_size})")
    print(headline)
    common.write_results(NAME, args, result, headline)
    return result


if __name__ == "__main__":
    main()
