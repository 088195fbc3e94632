"""How large are an ASR zip's updates next to the text tower's residual stream, and which part makes them?

    OMP_NUM_THREADS=1 .venv/bin/python recipes/diagnostics/asr_zip_updates.py \
        --model runs/asr-medium-whisper-ctc/model --codec whisper-joe --n 8

For each zip block (text layer it sits on, in order) on ``--n`` test utterances of ``--corpus``: the median
per-token norm of the residual stream entering the block, of the whole block's update, and of the
cross-attention part alone (tanh(attn_gate) * attention output; the rest is the gated feed-forward, which
does not read the speech directly), with the tanh of both gates. A zip that reads the speech needs
cross-attention updates that are not negligible next to the stream.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402

from towers.codec import load_codec  # noqa: E402
from zipper.data import load_split, make_segments  # noqa: E402
from zipper.fusion import GatedCrossAttention  # noqa: E402
from zipper.model import ZipperModel  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="a trained ASR zip directory")
    ap.add_argument("--codec", required=True, help="the codec its units come from (name or directory)")
    ap.add_argument("--corpus", default="data/corpus-medium", help="corpus whose test split is used")
    ap.add_argument("--n", type=int, default=8, help="test utterances (one batch)")
    args = ap.parse_args(argv)

    model = ZipperModel.from_pretrained(args.model).eval()
    rows = load_split(args.corpus, "test", load_codec(args.codec), progress=False, keep=lambda all_rows: all_rows[: args.n])
    blocks = [m for m in model.modules() if isinstance(m, GatedCrossAttention)]
    stream, total, attn = [], [], []
    def on_block(mod, inputs, out):  # (B, T, D) in and out
        stream.append(inputs[0].float().norm(dim=-1).median())
        total.append((out - inputs[0]).float().norm(dim=-1).median())

    def on_attention_out(gate):  # hook on a block's attention output projection, before the gate
        return lambda mod, inputs, out: attn.append((torch.tanh(gate) * out).float().norm(dim=-1).median())

    for b in blocks:
        b.register_forward_hook(on_block)
        b.out.register_forward_hook(on_attention_out(b.attn_gate))
    with torch.no_grad():
        model(make_segments(model, rows, "asr"))
    print("| block | median stream norm | block update (share) | cross-attention update (share) | tanh gates attn / ff |")
    print("|---|---|---|---|---|")
    for i, (b, h, u, a) in enumerate(zip(blocks, stream, total, attn)):
        print(f"| {i} | {h:.1f} | {u:.2f} ({u / h:.2%}) | {a:.3f} ({a / h:.2%}) | "
              f"{float(torch.tanh(b.attn_gate)):+.3f} / "
              f"{'-' if b.ff_gate is None else format(float(torch.tanh(b.ff_gate)), '+.3f')} |")


if __name__ == "__main__":
    main()
