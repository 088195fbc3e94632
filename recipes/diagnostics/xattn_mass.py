"""Where does a zip's cross-attention look? Per zip block, on the first ``--n`` test utterances
(teacher-forced, as in training):

- ``start``: the mean attention mass on the source segment's start positions (BOS + the forced
  prefix), which are the same for every example and so carry nothing about it;
- ``entropy``: the mean attention entropy in nats (``ln M`` for uniform attention over M positions);
- ``guide``: the mean off-diagonal share (``zipper.fusion.diagonal_guide``, sigma 0.2; 0 = on the
  diagonal), what ``guided_attention`` trains down;
- ``gate``: tanh of the block's attention gate.

    OMP_NUM_THREADS=1 .venv/bin/python recipes/diagnostics/xattn_mass.py --task tts \
        --model runs/tts-medium-whisper-std/model --corpus data/corpus-medium --codec whisper-std-joe --n 8
"""
from __future__ import annotations

import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402

from zip_probe import load_probe, probe_parser  # noqa: E402  (this directory)
from zipper.data import make_segments  # noqa: E402
from zipper.fusion import GatedCrossAttention, diagonal_guide, guide_penalty  # noqa: E402


def main(argv=None):
    ap = probe_parser(__doc__, "test", corpus="data/corpus-medium", n=8)
    args = ap.parse_args(argv)

    model, examples = load_probe(args, "test")
    segments = make_segments(model, examples, args.task)
    src, dst = (segments[0], segments[1])
    n_start = len(model.start_ids(src.modality))
    rows = []

    def probe(block, inputs):
        x, k, v, key_mask = inputs[:4]
        w = block.attention_weights(x, k, key_mask)  # (B, H, T, M)
        real = dst.mask()[:, None, :, None].float()  # (B, 1, T, 1): real queries only
        n = real.sum() * w.shape[1]
        start = (w[..., :n_start].sum(-1, keepdim=True) * real).sum() / n
        entropy = (-(w.clamp_min(1e-12).log() * w).sum(-1, keepdim=True) * real).sum() / n
        guide = guide_penalty(w, diagonal_guide(dst.mask(), key_mask))
        rows.append((start.item(), entropy.item(), guide.item(), torch.tanh(block.attn_gate).item()))

    hooks = [m.register_forward_pre_hook(probe) for m in model.modules() if isinstance(m, GatedCrossAttention)]
    with torch.no_grad():
        model(segments)
    for h in hooks:
        h.remove()
    mem = src.mask().sum(-1).float().mean().item()
    print(f"{args.task}: {dst.modality} reads {src.modality}; {n_start} start positions of ~{mem:.0f} "
          f"(uniform: start {n_start / mem:.3f}, entropy {math.log(mem):.2f} nats)")
    print("| block | start | entropy | guide | gate |\n|---|---|---|---|---|")
    for i, (start, entropy, guide, gate) in enumerate(rows):
        print(f"| {i} | {start:.3f} | {entropy:.2f} | {guide:.3f} | {gate:.3f} |")


if __name__ == "__main__":
    main()
