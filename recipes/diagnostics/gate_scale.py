"""Are a zip's gates what keeps it from reading its source? Scale every tanh gate by s, then measure
how much the target's teacher-forced NLL depends on the source (``zipper.tasks.source_use``), on the
first ``--n`` dev utterances.

If the NLL with the right source falls and ``*_info`` grows as the gates open past s = 1, the blocks
read something useful and the gates are holding it back (train them faster: ``gate_lr_mult``). If the
NLL rises, what the blocks read is not yet worth more than the tower's own guess, and opening the
gates sooner would not help.

    OMP_NUM_THREADS=1 .venv/bin/python recipes/diagnostics/gate_scale.py --task tts \
        --model runs/tts-base-whisper-proj-guided/model --corpus data/corpus-base --codec whisper-proj-joe \
        --n 48 --scales 0,1,2,4,8
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402

from zip_probe import load_probe, probe_parser  # noqa: E402  (this directory)
from zipper.tasks import source_use  # noqa: E402


def scale_gates(model, scale: float) -> dict[str, float]:
    """Set every gate g (names ending "gate") to atanh(scale * tanh(g)), clipped below 1; returns the
    original values, for ``restore_gates``."""
    saved = {}
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("gate"):
                saved[name] = p.detach().clone()
                p.copy_(torch.atanh((scale * torch.tanh(p)).clamp(-0.999, 0.999)))
    return saved


def restore_gates(model, saved: dict) -> None:
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name in saved:
                p.copy_(saved[name])


def main(argv=None):
    ap = probe_parser(__doc__, "dev", corpus="data/corpus-base", n=48)
    ap.add_argument("--scales", default="0,1,2,4,8", help="comma-separated gate scales (1 = as trained)")
    args = ap.parse_args(argv)

    model, examples = load_probe(args, "dev")
    gates = {n: round(torch.tanh(p).item(), 3) for n, p in model.named_parameters() if n.endswith("attn_gate")}
    print(f"attention gates (tanh) as trained: {list(gates.values())}")
    print("| gate scale | NLL, own source | NLL, another's source | source info |\n|---|---|---|---|")
    for s in (float(x) for x in args.scales.split(",")):
        saved = scale_gates(model, s)
        use = source_use(model, examples, args.task)
        restore_gates(model, saved)
        own, other, info = use.values()
        print(f"| {s:g} | {own:.4f} | {other:.4f} | {info:.4f} |")


if __name__ == "__main__":
    main()
