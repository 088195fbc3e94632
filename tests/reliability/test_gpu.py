"""On a GPU: data made on the CPU trains and decodes with the towers on the GPU. Skipped without CUDA (CI);
`tests/zipper/test_model.py` checks the same placement on CPU with the meta device standing in."""
from __future__ import annotations

import pytest
import torch

from tests.conftest import tiny_text_tower, tiny_tower
from zipper import Segment, ZipperModel
from zipper.train import TrainConfig, fit

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")


def _stream(start):
    k = start
    while True:
        g = torch.Generator().manual_seed(k)  # CPU batches, as the recipes make them
        yield [Segment("speech", torch.randint(3, 40, (2, 6), generator=g)),
               Segment("text", torch.randint(3, 56, (2, 5), generator=g), loss=True)]
        k += 1


def test_a_zip_trains_on_the_gpu_from_cpu_batches(tmp_path):
    model = ZipperModel.from_towers([tiny_tower("llama", "speech", vocab=40, seed=1),
                                     tiny_tower("gpt2", "text", vocab=56, seed=2)], directions=["speech->text"])
    res = fit(model, lambda m, b: m(b).loss, _stream, TrainConfig(steps=3, lr=1e-3, warmup_steps=1), tmp_path / "run")
    assert len(res["history"]) == 3 and all(torch.isfinite(torch.tensor(res["history"])))
    assert model.tower("text").device.type == "cuda"
    out = model.generate([Segment("speech", torch.randint(3, 40, (1, 6)))], ["text"], max_new_tokens=3)[0]
    assert out.input_ids.device.type == "cuda"


def test_the_speech_tower_pretrains_on_the_gpu(tmp_path):
    from towers.speech_lm import lm_batches, lm_loss, unit_perplexity
    from towers.units import UnitTokenizer

    tok = UnitTokenizer(30)
    seqs = [torch.randint(0, 30, (n,)) for n in (8, 12, 9, 15)]
    model = tiny_tower("llama", "speech", vocab=tok.vocab_size, seed=1).model
    fit(model, lm_loss, lambda s: lm_batches(seqs, tok, 2, seed=0, start_step=s),
        TrainConfig(steps=2, lr=1e-3, warmup_steps=1), tmp_path / "tower",
        eval_fn=lambda: {"ppl": unit_perplexity(model, seqs, tok)})
    assert next(model.parameters()).device.type == "cuda"


def test_transcribe_and_speak_with_towers_on_the_gpu(smollm2_tokenizer):
    from towers.units import UnitTokenizer
    from zipper.tasks import speak_units, transcribe_units

    text = tiny_text_tower(smollm2_tokenizer)
    speech = tiny_tower("llama", "speech", vocab=40, seed=1)
    speech.tokenizer = UnitTokenizer(30)
    asr = ZipperModel.from_towers([speech, text], directions=["speech->text"]).cuda()
    assert len(transcribe_units(asr, [torch.randint(0, 30, (9,)), torch.randint(0, 30, (5,))], num_beams=2)) == 2
    asr.unzip()
    tts = ZipperModel.from_towers([text, speech], directions=["text->speech"]).cuda()
    units = speak_units(tts, ["hello there", "a cat"], units_per_second=25.0)
    assert len(units) == 2 and all(u.device.type == "cpu" for u in units)
