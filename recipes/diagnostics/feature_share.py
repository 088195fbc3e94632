"""How much a zip's feature input adds to its speech tower's input: the mean norm of the feature addition
(zipper/features.py) against that of the unit embeddings, per unit position, on the first N test utterances.

    python recipes/diagnostics/feature_share.py CONFIG MODEL_DIR [N]
    e.g. python recipes/diagnostics/feature_share.py recipes/configs/asr_medium_whisper_proj_chars_guided_states.json \\
             runs/asr-medium-states-45m/model 10

The states come as `zipper eval` takes them (`zipper.recipe.read_split`: the corpus's cache, or one encoder run).
A zip just extended or built with its feature input adds exactly zero.
"""
from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as `python recipes/diagnostics/...`

from towers.codec import load_codec  # noqa: E402
from zipper.model import ZipperModel  # noqa: E402
from zipper.recipe import RecipeConfig, read_split, splits_used  # noqa: E402


def main(argv: list[str]) -> int:
    config, model_dir, n = argv[0], argv[1], int(argv[2]) if len(argv) > 2 else 10
    # the rows with their states, whatever the config trained
    cfg = dataclasses.replace(RecipeConfig.from_json(config), speech_states=True)
    model = ZipperModel.from_pretrained(model_dir)
    if "speech" not in model.config.feature_towers:
        raise SystemExit(f"{model_dir} has no feature input on its speech tower")
    rows = read_split(cfg, Path(cfg.corpus), "test", load_codec(cfg.codec), splits_used(cfg)["test"])[:n]
    speech = model.tower("speech")
    with torch.no_grad():
        added = torch.cat([model.feature_inputs["speech"](r["states"][None].float(),
                                                          torch.ones(1, len(r["states"]), dtype=torch.bool))[0]
                           for r in rows])  # (positions, D)
        embedded = torch.cat([speech.model.get_input_embeddings()(speech.tokenizer.encode(r["units"])[1:-1])
                              for r in rows])  # (positions, D): the units without BOS and EOS
    print(f"{len(rows)} test utterances, {len(added)} unit positions: feature addition norm "
          f"{added.norm(dim=-1).mean():.3f}, unit embedding norm {embedded.norm(dim=-1).mean():.3f} (means)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
