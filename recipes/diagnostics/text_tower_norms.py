"""Hidden-state norms of the text tower per position at its zip points: is position 0 an attention sink?

    python recipes/diagnostics/text_tower_norms.py [--tower smollm2-135m] [--text "..."]

A zip block adds tanh(gate) * update to the residual stream. Where that stream is huge (the
massive activations of a first-position attention sink), any update of normal size vanishes after
the next RMSNorm, so the zip cannot steer the prediction made at that position.
"""
import argparse

import torch

from towers import load_tower
from zipper.data import text_ids

p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
p.add_argument("--tower", default="smollm2-135m", help="registered name or directory of a text tower")
p.add_argument("--text", default="Let thy troops beset our gates.", help="a sentence to run")
p.add_argument("--layers", default="4,8,12,16,20,24,28", help="hidden-state indices to report (0 = embeddings)")
a = p.parse_args()
tower = load_tower(a.tower, modality="text")
ids = text_ids(tower, a.text)[None]
print("tokens:", tower.tokenizer.convert_ids_to_tokens(ids[0].tolist()))
with torch.no_grad():
    hidden = tower.model(input_ids=ids, output_hidden_states=True).hidden_states
for layer in map(int, a.layers.split(",")):
    norms = hidden[layer][0].norm(dim=-1)
    print(f"layer {layer:2d}: position 0 {norms[0]:9.1f} | positions 1.. median {norms[1:].median():7.1f} "
          f"max {norms[1:].max():7.1f}")
