"""The training loop's optimizer set-up: gates get their own learning rate, frozen towers none."""
from __future__ import annotations

import torch

from tests.conftest import tiny_tower
from zipper import Segment, ZipperModel
from zipper.train import TrainConfig, fit


def _stream(start):
    k = start
    while True:
        g = torch.Generator().manual_seed(k)
        yield [Segment("speech", torch.randint(3, 40, (2, 6), generator=g)),
               Segment("text", torch.randint(3, 56, (2, 5), generator=g), loss=True)]
        k += 1


def test_gate_lr_multiplier_moves_gates_faster(tmp_path):
    """Adam moves a parameter ~lr per step, so after one step |gate| ~ lr x mult: the multiplier shows."""
    moved = {}
    for mult in (1.0, 50.0):
        torch.manual_seed(0)
        model = ZipperModel.from_towers([tiny_tower("llama", "speech", vocab=40, seed=1),
                                         tiny_tower("gpt2", "text", vocab=56, seed=2)], directions=["speech->text"])
        fit(model, lambda m, b: m(b).loss, _stream, TrainConfig(steps=1, lr=1e-3, warmup_steps=1, grad_clip=0,
                                                                gate_lr_mult=mult), tmp_path / str(mult))
        gates = [p.abs().max().item() for n, p in model.named_parameters() if n.endswith("gate")]
        others = [p for n, p in model.named_parameters() if p.requires_grad and not n.endswith("gate")]
        moved[mult] = max(gates)
        assert others and all(not p.requires_grad for p in model.tower("text").model.parameters())
    assert 0.5e-3 < moved[1.0] < 2e-3 and 25e-3 < moved[50.0] < 100e-3, moved


def test_sigint_checkpoints_the_step_and_resuming_equals_an_uninterrupted_run(tmp_path):
    """Ctrl-C (SIGINT) during training: the step finishes, a checkpoint is written, TrainingInterrupted is
    raised; running again resumes there and ends with the weights of a run never interrupted."""
    import os
    import signal

    import pytest

    from zipper.train import TrainingInterrupted, latest_checkpoint

    def new_model():
        torch.manual_seed(0)
        return ZipperModel.from_towers([tiny_tower("llama", "speech", vocab=40, seed=1),
                                        tiny_tower("gpt2", "text", vocab=56, seed=2)], directions=["speech->text"])

    cfg = TrainConfig(steps=6, lr=1e-3, warmup_steps=1)
    whole = new_model()
    fit(whole, lambda m, b: m(b).loss, _stream, cfg, tmp_path / "whole")

    calls = []

    def loss_then_sigint(m, b):
        calls.append(1)
        if len(calls) == 3:  # the signal arrives mid-step 3
            os.kill(os.getpid(), signal.SIGINT)
        return m(b).loss

    model = new_model()
    with pytest.raises(TrainingInterrupted, match="SIGINT at step 3"):
        fit(model, loss_then_sigint, _stream, cfg, tmp_path / "cut")
    assert latest_checkpoint(tmp_path / "cut" / "checkpoints").name.endswith("3")
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handlers restored
    resumed = new_model()
    res = fit(resumed, lambda m, b: m(b).loss, _stream, cfg, tmp_path / "cut")
    assert res["steps"] == 6
    for (n, a), b in zip(whole.named_parameters(), resumed.parameters()):
        assert torch.equal(a, b), n
