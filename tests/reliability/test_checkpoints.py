"""Training checkpoints: exact resume, and a save that fails part-way loses nothing."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from tests.conftest import tiny_tower
from zipper import Segment, ZipperModel
from zipper.train import TrainConfig, fit, latest_checkpoint


def _model():
    speech = tiny_tower("llama", "speech", vocab=40, hidden=32, layers=2, seed=1)
    text = tiny_tower("gpt2", "text", vocab=56, hidden=32, layers=2, seed=2)
    return ZipperModel.from_towers([speech, text], directions=["speech->text"], dropout=0.1)


def _stream(start: int):
    step = start
    while True:  # batch k depends only on k: the data position is restored exactly
        g = torch.Generator().manual_seed(step)
        yield torch.randint(3, 40, (2, 6), generator=g), torch.randint(3, 56, (2, 5), generator=g)
        step += 1


def _loss(model, batch):
    s, t = batch
    return model([Segment("speech", s), Segment("text", t, loss=True)]).loss


def _cfg(steps, **kw):
    return TrainConfig(steps=steps, batch_size=2, lr=1e-2, warmup_steps=2, log_every=1, seed=0, **kw)


def test_resume_is_bitwise_exact(tmp_path):
    torch.use_deterministic_algorithms(True)
    try:
        straight = _model()
        full = fit(straight, _loss, _stream, _cfg(8), tmp_path / "a")
        first = _model()
        fit(first, _loss, _stream, _cfg(8, max_minutes=1e-9), tmp_path / "b")  # stops after step 1
        assert latest_checkpoint(tmp_path / "b" / "checkpoints").name == "step-0000001"
        resumed = _model()  # a fresh model, as in a new process
        rest = fit(resumed, _loss, _stream, _cfg(8), tmp_path / "b")
    finally:
        torch.use_deterministic_algorithms(False)
    assert rest["history"] == full["history"]  # every loss, bit for bit (dropout RNG restored too)
    a, b = straight.zip_state_dict(), resumed.zip_state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_failed_save_keeps_previous_checkpoint(tmp_path, monkeypatch):
    model = _model()
    fit(model, _loss, _stream, _cfg(2), tmp_path)
    good = latest_checkpoint(tmp_path / "checkpoints")
    import safetensors.torch

    calls = {"n": 0}
    real = safetensors.torch.save_file

    def flaky(*args, **kwargs):  # the optimizer file fails after the weights were written
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError("disk full")
        return real(*args, **kwargs)

    monkeypatch.setattr(safetensors.torch, "save_file", flaky)
    with pytest.raises(OSError, match="disk full"):
        fit(_model(), _loss, _stream, _cfg(3), tmp_path)
    monkeypatch.undo()
    assert latest_checkpoint(tmp_path / "checkpoints") == good
    assert not [p for p in (tmp_path / "checkpoints").iterdir() if p.name.startswith(".tmp")]
    res = fit(_model(), _loss, _stream, _cfg(3), tmp_path)  # resumes from step 2 and finishes
    assert res["steps"] == 3


def test_sigkill_during_save_keeps_previous_checkpoint(tmp_path):
    """A process killed while writing a checkpoint leaves the previous one loadable."""
    script = textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {str(Path(__file__).resolve().parents[2])!r})
        import safetensors.torch
        from tests.reliability.test_checkpoints import _model, _loss, _stream, _cfg
        from zipper.train import fit
        out = {str(tmp_path)!r}
        fit(_model(), _loss, _stream, _cfg(2), out)
        real = safetensors.torch.save_file
        def killed(*a, **k):
            real(*a, **k)
            os.kill(os.getpid(), signal.SIGKILL)  # dies mid-checkpoint, after one file
        safetensors.torch.save_file = killed
        fit(_model(), _loss, _stream, _cfg(3), out)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    assert latest_checkpoint(tmp_path / "checkpoints").name == "step-0000002"
    assert fit(_model(), _loss, _stream, _cfg(3), tmp_path)["steps"] == 3


def test_resume_refuses_a_checkpoint_of_another_model_config(tmp_path):
    """Same trainable tensors, different meaning (here a forced text prefix): resuming would silently
    continue the wrong model, so it is refused with the differing keys; the checkpoint is kept."""
    fit(_model(), _loss, _stream, _cfg(2), tmp_path)
    other = _model()
    other.config.prefix_ids = [[], [7]]
    with pytest.raises(ValueError, match=r"different model config \(prefix_ids: \[\[\]\] there, \[\[\[\], \[7\]\]\] now"):
        fit(other, _loss, _stream, _cfg(3), tmp_path)
    assert latest_checkpoint(tmp_path / "checkpoints").name == "step-0000002"
    assert fit(_model(), _loss, _stream, _cfg(3), tmp_path)["steps"] == 3  # the same config still resumes


def _drop_recorded_field(ckpt_dir, field):
    """Rewrite the checkpoint's recorded model config as one written before ``field`` existed."""
    state_file = latest_checkpoint(ckpt_dir) / "trainer_state.json"
    state = json.loads(state_file.read_text())
    del state["model_config"][field]
    state_file.write_text(json.dumps(state))


def test_resume_reads_a_field_the_checkpoint_predates_as_its_default(tmp_path):
    """A checkpoint written before a config field existed ran with that field's default: it resumes
    into a model with the default, and is refused (naming the field) for any other value."""
    fit(_model(), _loss, _stream, _cfg(2), tmp_path)
    _drop_recorded_field(tmp_path / "checkpoints", "ctc_units")
    other = _model()
    other.config.ctc_units = "chars"
    with pytest.raises(ValueError, match=r"different model config \(ctc_units: \['tokens'\] there, \['chars'\] now"):
        fit(other, _loss, _stream, _cfg(3), tmp_path)
    assert fit(_model(), _loss, _stream, _cfg(3), tmp_path)["steps"] == 3


def test_resume_accepts_a_checkpoint_that_predates_a_fact_recorded_from_the_towers(tmp_path):
    """tower_special_ids has no meaningful default (it is read from the towers): a checkpoint written
    before it existed resumes, rather than being refused against an empty list."""
    fit(_model(), _loss, _stream, _cfg(2), tmp_path)
    _drop_recorded_field(tmp_path / "checkpoints", "tower_special_ids")
    assert fit(_model(), _loss, _stream, _cfg(3), tmp_path)["steps"] == 3


def test_a_single_decoder_checkpoint_resumes_without_its_recorded_special_ids_only(tmp_path):
    """The single decoder's text_special_ids are read from its tower: a checkpoint that predates them
    resumes. Any other key it lacks (here text_prefix_ids, which has no default there) is still refused."""
    from zipper.baseline import SingleDecoder

    def model():
        torch.manual_seed(0)
        return SingleDecoder(tiny_tower("llama", "text", vocab=56, seed=3), n_units=37)

    def loss(m, batch):
        s, t = batch
        return m([Segment("speech", s), Segment("text", t, loss=True)]).loss

    fit(model(), loss, _stream, _cfg(2), tmp_path / "a")
    _drop_recorded_field(tmp_path / "a" / "checkpoints", "text_special_ids")
    assert fit(model(), loss, _stream, _cfg(3), tmp_path / "a")["steps"] == 3
    fit(model(), loss, _stream, _cfg(2), tmp_path / "b")
    _drop_recorded_field(tmp_path / "b" / "checkpoints", "text_prefix_ids")
    with pytest.raises(ValueError, match=r"different model config \(text_prefix_ids"):
        fit(model(), loss, _stream, _cfg(3), tmp_path / "b")


def test_a_resave_killed_between_its_renames_keeps_a_complete_checkpoint(tmp_path, monkeypatch):
    """Re-saving a step moves the previous copy aside before the new one takes its place: killed in between
    (here: the new copy's rename fails), the previous copy still loads, and the next save tidies up."""
    from zipper.train import load_checkpoint, save_checkpoint

    def model_and_optimizer():
        model = _model().train()  # its trainability, as fit sets it
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad])
        return model, optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)

    fit(_model(), _loss, _stream, _cfg(2), tmp_path)
    ckpt = tmp_path / "checkpoints"
    real = Path.rename

    def killed(self, target):
        if self.name.startswith(".tmp-"):
            raise OSError("killed")
        return real(self, target)

    monkeypatch.setattr(Path, "rename", killed)
    with pytest.raises(OSError, match="killed"):
        save_checkpoint(ckpt, *model_and_optimizer(), 2)
    monkeypatch.undo()
    kept = latest_checkpoint(ckpt)
    assert kept is not None and load_checkpoint(kept, *model_and_optimizer())["step"] == 2
    assert fit(_model(), _loss, _stream, _cfg(3), tmp_path)["steps"] == 3  # resumes from it
    assert sorted(p.name for p in ckpt.iterdir()) == ["step-0000002", "step-0000003"]
    assert (ckpt / "step-0000002" / "COMPLETE").exists()
