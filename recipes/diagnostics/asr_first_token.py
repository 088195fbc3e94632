"""Where does the ASR zip's loss sit? Per-position NLL of the text with matched vs shuffled speech.

    python recipes/diagnostics/asr_first_token.py
    (reads the step-300 checkpoint of `asr_overfit.py 32 300 1e-3 text`; prints tanh(gate) of every gate)

If the speech were used, the first text token's NLL would be low with matched speech and high with
another utterance's speech.
"""
import torch
from safetensors.torch import load_file
from towers import load_tower
from towers.codec import load_codec
from zipper.recipe import RecipeConfig, build_zip
from zipper.data import load_split, make_segments
torch.set_num_threads(2)
cfg = RecipeConfig(task="asr", speech_tower="runs/speech-tower-small", text_prefix="", cross_attention_interval_speech=1,
                   cross_attention_interval_text=4, input_projection_towers=["text"])
codec = load_codec("default")
train = load_split("data/corpus-small", "train", codec, progress=False, keep=lambda rows: rows[:32])
model = build_zip(cfg, load_tower(cfg.speech_tower, modality="speech"), load_tower("smollm2-135m", modality="text"))
w = load_file("runs/overfit/run-32-300-0.001-text-1.0-3/checkpoints/step-0000300/trainable.safetensors")
params = dict(model.named_parameters())
with torch.no_grad():
    for n, t in w.items(): params[n].copy_(t)
model.eval()
print({n: round(float(torch.tanh(p.detach())), 3) for n, p in model.named_parameters() if n.endswith("gate")})
def pos_loss(batch, speech_from=None):
    segs = make_segments(model, batch, "asr")
    if speech_from is not None:
        segs[0] = make_segments(model, speech_from, "asr")[0]
    out = model(segs)
    logits = out.logits[1][:, :-1]; ids = segs[1].input_ids[:, 1:]; mask = segs[1].attention_mask[:, 1:].bool()
    nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), ids, reduction="none")
    return [round(float(nll[:, i][mask[:, i]].mean()), 3) for i in range(6)], round(float(nll[mask].mean()), 3)
with torch.no_grad():
    b = train[:16]
    print("matched speech: per-position NLL", pos_loss(b))
    print("shuffled speech:", pos_loss(b, speech_from=b[1:] + b[:1]))
