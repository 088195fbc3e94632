"""The training loop: gates get their own learning rate, frozen towers none; Ctrl-C and resume; the best
evaluation's weights and early stopping."""
from __future__ import annotations

import dataclasses

import pytest
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

    from zipper.train import TrainingInterrupted, latest_checkpoint

    def new_model():
        torch.manual_seed(0)
        return ZipperModel.from_towers([tiny_tower("llama", "speech", vocab=40, seed=1),
                                        tiny_tower("gpt2", "text", vocab=56, seed=2)], directions=["speech->text"])

    cfg = TrainConfig(steps=6, lr=1e-3, warmup_steps=1)
    whole = new_model()
    fit(whole, lambda m, b: m(b).loss, _stream, cfg, tmp_path / "whole")

    calls = []
    before = signal.getsignal(signal.SIGINT)  # SIG_IGN when started in the background by a non-interactive shell

    def loss_then_sigint(m, b):
        calls.append(1)
        if len(calls) == 3:  # the signal arrives mid-step 3
            os.kill(os.getpid(), signal.SIGINT)
        return m(b).loss

    model = new_model()
    with pytest.raises(TrainingInterrupted, match="SIGINT at step 3"):
        fit(model, loss_then_sigint, _stream, cfg, tmp_path / "cut")
    assert latest_checkpoint(tmp_path / "cut" / "checkpoints").name.endswith("3")
    assert signal.getsignal(signal.SIGINT) is before  # handlers restored
    resumed = new_model()
    res = fit(resumed, lambda m, b: m(b).loss, _stream, cfg, tmp_path / "cut")
    assert res["steps"] == 6
    for (n, a), b in zip(whole.named_parameters(), resumed.parameters()):
        assert torch.equal(a, b), n


def _new_zip():
    torch.manual_seed(0)
    return ZipperModel.from_towers([tiny_tower("llama", "speech", vocab=40, seed=1),
                                    tiny_tower("gpt2", "text", vocab=56, seed=2)], directions=["speech->text"])


def _scripted_eval(model, values, snapshots):
    """An eval_fn reporting ``values`` in turn as ``dev_x`` and keeping the trainable weights it saw."""
    def evaluate():
        snapshots.append({n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad})
        return {"dev_x": values[len(snapshots) - 1]}
    return evaluate


def _same(model, weights) -> bool:
    return all(torch.equal(p, weights[n]) for n, p in model.named_parameters() if p.requires_grad)


def test_best_metric_ends_with_the_weights_of_the_best_evaluation(tmp_path):
    """Evaluations every 2 steps report 3, 1, 2, 4: training runs all 8 steps and ends with step 4's
    weights; with best_mode max, with step 8's (the last, nothing reloaded)."""
    for mode, best_eval in (("min", 1), ("max", 3)):
        model, snaps = _new_zip(), []
        cfg = TrainConfig(steps=8, lr=1e-2, warmup_steps=1, eval_every=2, best_metric="dev_x", best_mode=mode)
        res = fit(model, lambda m, b: m(b).loss, _stream, cfg, tmp_path / mode,
                  eval_fn=_scripted_eval(model, [3, 1, 2, 4], snaps))
        assert res["steps"] == 8 and not res["stopped_early"] and len(snaps) == 4
        assert res["best"] == {"step": 2 * (best_eval + 1), "value": [3, 1, 2, 4][best_eval]}
        assert _same(model, snaps[best_eval]) and not _same(model, snaps[0])
        assert [d.name for d in (tmp_path / mode / "best").iterdir()] == [f"step-{2 * (best_eval + 1):07d}"]


def test_patience_stops_early_keeps_the_best_and_a_rerun_trains_no_further(tmp_path):
    """Patience 2 over evaluations 1, 2, 3, ...: stop after the third (step 6) with step 2's weights; the
    same command again resumes, sees it stopped early, trains nothing and ends with the same weights."""
    model, snaps = _new_zip(), []
    cfg = TrainConfig(steps=20, lr=1e-2, warmup_steps=1, eval_every=2, best_metric="dev_x", patience=2)
    res = fit(model, lambda m, b: m(b).loss, _stream, cfg, tmp_path, eval_fn=_scripted_eval(model, list(range(1, 11)), snaps))
    assert res["stopped_early"] and res["steps"] == 6 and len(snaps) == 3 and res["best"]["step"] == 2
    assert _same(model, snaps[0])
    again, more = _new_zip(), []
    res2 = fit(again, lambda m, b: m(b).loss, _stream, cfg, tmp_path, eval_fn=_scripted_eval(again, [0] * 10, more))
    assert res2["stopped_early"] and res2["steps"] == 6 and more == [] and _same(again, snaps[0])


def test_resume_after_ctrl_c_keeps_the_best_so_far(tmp_path):
    """Interrupted after the best evaluation (step 2), resumed: evaluations that do not beat it leave the
    run ending with step 2's weights, as if never interrupted."""
    import os
    import signal

    from zipper.train import TrainingInterrupted

    cfg = TrainConfig(steps=6, lr=1e-2, warmup_steps=1, eval_every=2, save_every=2, best_metric="dev_x")
    whole, snaps = _new_zip(), []
    fit(whole, lambda m, b: m(b).loss, _stream, cfg, tmp_path / "whole", eval_fn=_scripted_eval(whole, [1, 5, 6], snaps))
    calls = []

    def loss_then_sigint(m, b):
        calls.append(1)
        if len(calls) == 3:
            os.kill(os.getpid(), signal.SIGINT)
        return m(b).loss

    cut, cut_snaps = _new_zip(), []
    with pytest.raises(TrainingInterrupted):
        fit(cut, loss_then_sigint, _stream, cfg, tmp_path / "cut", eval_fn=_scripted_eval(cut, [1], cut_snaps))
    resumed, later = _new_zip(), []
    res = fit(resumed, lambda m, b: m(b).loss, _stream, cfg, tmp_path / "cut", eval_fn=_scripted_eval(resumed, [5, 6], later))
    assert res["best"] == {"step": 2, "value": 1} and len(later) == 2
    assert _same(resumed, snaps[0]) and _same(whole, snaps[0])


@pytest.mark.parametrize("kwargs", [dict(best_mode="up"), dict(patience=2), dict(patience=-1, best_metric="x")])
def test_bad_best_metric_settings_are_refused(kwargs):
    with pytest.raises(ValueError):
        TrainConfig(**kwargs)


def test_a_best_metric_the_evaluation_lacks_is_named(tmp_path):
    model = _new_zip()
    cfg = TrainConfig(steps=2, lr=1e-3, warmup_steps=1, eval_every=2, best_metric="dev_y")
    with pytest.raises(KeyError, match="dev_y.*dev_x"):
        fit(model, lambda m, b: m(b).loss, _stream, cfg, tmp_path, eval_fn=lambda: {"dev_x": 1.0})


def _counting_loss(counter, signal_in_step=None):
    import os
    import signal

    def loss_fn(m, b):
        counter[0] += 1
        if counter[0] == signal_in_step:
            os.kill(os.getpid(), signal.SIGINT)
        return m(b).loss
    return loss_fn


def _eval_by_step(counter, by_step):
    return lambda: {"dev_x": by_step[counter[0]]}


def test_ctrl_c_on_an_evaluation_step_evaluates_it_on_resume(tmp_path):
    """Ctrl-C during step 4, an evaluation step whose weights are the best: the checkpoint marks the
    evaluation as pending and the resumed run makes it first, so it ends as an uninterrupted run does."""
    from zipper.train import TrainingInterrupted

    cfg = TrainConfig(steps=6, lr=1e-2, warmup_steps=1, eval_every=2, best_metric="dev_x")
    by_step = {2: 5.0, 4: 1.0, 6: 3.0}
    whole, n = _new_zip(), [0]
    ref = fit(whole, _counting_loss(n), _stream, cfg, tmp_path / "whole", eval_fn=_eval_by_step(n, by_step))
    cut, n = _new_zip(), [0]
    with pytest.raises(TrainingInterrupted, match="at step 4"):
        fit(cut, _counting_loss(n, signal_in_step=4), _stream, cfg, tmp_path / "cut", eval_fn=_eval_by_step(n, by_step))
    resumed, n = _new_zip(), [4]
    res = fit(resumed, _counting_loss(n), _stream, cfg, tmp_path / "cut", eval_fn=_eval_by_step(n, by_step))
    assert [e["step"] for e in res["evals"]] == [e["step"] for e in ref["evals"]] == [2, 4, 6]
    assert res["best"] == ref["best"] == {"step": 4, "value": 1.0}
    assert all(torch.equal(a, b) for a, b in zip(whole.parameters(), resumed.parameters()))


def test_an_evaluation_at_a_time_budgets_end_is_not_the_best_but_its_better_weights_are_kept(tmp_path, monkeypatch):
    """A run cut by --max-minutes evaluates where it stops (step 3, off the every-2 schedule); that value
    neither becomes the best nor counts towards patience, so two budgets end like one run. The run still
    ends with the better weights: step 3's when its value beats the best (0.5 < 3), else the best's."""
    import zipper.train as train

    clock = [0.0]
    monkeypatch.setattr(train.time, "time", lambda: clock[0])
    cfg = TrainConfig(steps=6, lr=1e-2, warmup_steps=1, eval_every=2, best_metric="dev_x", max_minutes=1, patience=2)
    for at_3, kept_step in ((0.5, 3), (4.0, 2)):
        by_step, n, snaps = {2: 3.0, 3: at_3, 4: 2.0, 6: 1.0}, [0], []
        out = tmp_path / str(kept_step)

        def tick(m, b):  # each step takes 25 s: the 1-minute budget runs out after step 3
            clock[0] += 25.0
            n[0] += 1
            return m(b).loss

        def evaluate():
            snaps.append({k: p.detach().clone() for k, p in model.named_parameters() if p.requires_grad})
            return {"dev_x": by_step[n[0]]}

        model = _new_zip()
        first = fit(model, tick, _stream, cfg, out, eval_fn=evaluate)
        assert [e["step"] for e in first["evals"]] == [2, 3] and first["best"] == {"step": 2, "value": 3.0}
        assert first["kept"] == {"step": kept_step, "value": by_step[kept_step]}
        assert _same(model, snaps[kept_step - 2]) and not _same(model, snaps[3 - kept_step])
        model = _new_zip()
        second = fit(model, tick, _stream, cfg, out, eval_fn=evaluate)
        assert [e["step"] for e in second["evals"]] == [2, 3, 4, 6]
        assert second["best"] == second["kept"] == {"step": 6, "value": 1.0} and not second["stopped_early"]


def test_ctrl_c_in_the_last_step_still_raises_after_its_checkpoint(tmp_path):
    """A signal in the last step: the run is complete and checkpointed, but fit raises rather than let a
    caller start a long test evaluation; the same command again trains nothing and returns."""
    from zipper.train import TrainingInterrupted, latest_checkpoint

    cfg = TrainConfig(steps=3, lr=1e-3, warmup_steps=1)
    n = [0]
    with pytest.raises(TrainingInterrupted, match="at step 3"):
        fit(_new_zip(), _counting_loss(n, signal_in_step=3), _stream, cfg, tmp_path)
    assert latest_checkpoint(tmp_path / "checkpoints").name.endswith("3")
    assert fit(_new_zip(), _counting_loss(n), _stream, cfg, tmp_path)["steps"] == 3 and n[0] == 3


def test_a_resume_goes_on_from_the_batches_drawn_whatever_the_process_count(tmp_path):
    """Checkpoints record how many batches the run has drawn (steps x processes); a resume asks the stream
    for the batches after those, so resuming with another process count neither replays nor skips any."""
    import json

    from zipper.train import latest_checkpoint

    starts = []

    def stream(start):
        starts.append(start)
        return _stream(start)

    cfg = TrainConfig(steps=4, lr=1e-3, warmup_steps=1, save_every=2)
    fit(_new_zip(), lambda m, b: m(b).loss, stream, TrainConfig(steps=2, lr=1e-3, warmup_steps=1), tmp_path)
    state_file = latest_checkpoint(tmp_path / "checkpoints") / "trainer_state.json"
    state = json.loads(state_file.read_text())
    assert state["batches"] == 2
    state["batches"] = 5  # as if two processes had run 2 steps, and one more batch had been drawn
    state_file.write_text(json.dumps(state))
    fit(_new_zip(), lambda m, b: m(b).loss, stream, cfg, tmp_path)
    assert starts == [0, 5]
    assert json.loads((latest_checkpoint(tmp_path / "checkpoints") / "trainer_state.json").read_text())["batches"] == 7


def test_a_resume_with_another_best_metric_starts_its_best_afresh(tmp_path):
    """The checkpoint's best was of dev_x (min); resumed with best_mode max, the old value is no yardstick:
    the next evaluation becomes the best, and nothing counts towards patience from before."""
    n = [0]
    first = TrainConfig(steps=2, lr=1e-3, warmup_steps=1, eval_every=2, best_metric="dev_x", patience=1)
    fit(_new_zip(), _counting_loss(n), _stream, first, tmp_path, eval_fn=lambda: {"dev_x": 1.0})
    again = TrainConfig(steps=4, lr=1e-3, warmup_steps=1, eval_every=2, best_metric="dev_x", best_mode="max",
                        patience=1)
    res = fit(_new_zip(), _counting_loss(n), _stream, again, tmp_path, eval_fn=lambda: {"dev_x": 0.5})
    assert res["best"] == {"step": 4, "value": 0.5} and res["steps"] == 4
    with pytest.raises(ValueError, match="log_every"):
        TrainConfig(log_every=0)


def _loss(m, b):
    return m(b).loss


def test_a_resume_names_the_settings_it_changes(tmp_path, capsys):
    """A longer schedule and another seed (documented ways to go on from a checkpoint) resume, in one line
    naming what changed; the time budget is not a change of meaning."""
    cfg = TrainConfig(steps=2, lr=1e-3, warmup_steps=1)
    fit(_new_zip(), _loss, _stream, cfg, tmp_path, settings={"data_fraction": 0.1})
    capsys.readouterr()
    more = dataclasses.replace(cfg, steps=3, seed=1, max_minutes=5)
    assert fit(_new_zip(), _loss, _stream, more, tmp_path, settings={"data_fraction": 0.1})["steps"] == 3
    lines = [line for line in capsys.readouterr().out.splitlines() if "resuming" in line]
    assert len(lines) == 1 and lines[0].endswith(
        "(step 2) with changed settings: steps 2 -> 3 (cosine schedule recomputed), seed 0 -> 1"), lines


def test_a_finished_checkpoint_is_not_relabelled_nor_one_past_the_steps_resumed(tmp_path):
    """Nothing left to train, under another seed or data fraction: the old weights would be tested under a new
    label, so it is refused; so is a checkpoint past the steps asked for. Another time budget still resumes."""
    cfg = TrainConfig(steps=2, lr=1e-3, warmup_steps=1)
    fit(_new_zip(), _loss, _stream, cfg, tmp_path, settings={"data_fraction": 0.1})
    for other, fraction in ((dataclasses.replace(cfg, seed=1), 0.1), (cfg, 1.0)):
        with pytest.raises(ValueError, match="finished training .*fresh output directory"):
            fit(_new_zip(), _loss, _stream, other, tmp_path, settings={"data_fraction": fraction})
    with pytest.raises(ValueError, match="at step 2, past the 1 steps asked for"):
        fit(_new_zip(), _loss, _stream, dataclasses.replace(cfg, steps=1), tmp_path, settings={"data_fraction": 0.1})
    again = fit(_new_zip(), _loss, _stream, dataclasses.replace(cfg, max_minutes=5), tmp_path,
                settings={"data_fraction": 0.1})
    assert again["steps"] == 2


def test_a_stop_step_ends_like_a_time_budget_and_a_resume_equals_one_run(tmp_path, capsys):
    """stop_step 3 of 6 stops, evaluates and checkpoints at step 3 on the 6-step schedule; the same call again
    trains nothing; a resume without it ends with one uninterrupted run's weights (the lr schedule was kept)."""
    cfg = TrainConfig(steps=6, lr=1e-2, warmup_steps=1, eval_every=2)
    whole = _new_zip()
    fit(whole, _loss, _stream, cfg, tmp_path / "whole", eval_fn=lambda: {"dev_x": 1.0})
    cut = dataclasses.replace(cfg, stop_step=3)
    first = fit(_new_zip(), _loss, _stream, cut, tmp_path / "cut", eval_fn=lambda: {"dev_x": 1.0})
    assert first["steps"] == 3 and [e["step"] for e in first["evals"]] == [2, 3]
    assert "stopped at step 3 of the 6-step schedule (stop_step)" in capsys.readouterr().out
    assert fit(_new_zip(), _loss, _stream, cut, tmp_path / "cut", eval_fn=lambda: {"dev_x": 1.0})["steps"] == 3
    with pytest.raises(ValueError, match="at step 3, past the stop step 2"):
        fit(_new_zip(), _loss, _stream, dataclasses.replace(cfg, stop_step=2), tmp_path / "cut")
    resumed = _new_zip()
    res = fit(resumed, _loss, _stream, cfg, tmp_path / "cut", eval_fn=lambda: {"dev_x": 1.0})
    assert res["steps"] == 6 and [e["step"] for e in res["evals"]] == [2, 3, 4, 6]
    for (n, a), b in zip(whole.named_parameters(), resumed.parameters()):
        assert torch.equal(a, b), n
    with pytest.raises(ValueError, match="stop_step must be >= 0"):
        TrainConfig(stop_step=-1)


def test_wall_time_adds_up_over_a_resumed_runs_segments(tmp_path, monkeypatch):
    """wall_s covers every segment of a resumed run (kept in the checkpoints), segment_wall_s this call's; a
    checkpoint written before wall_s was kept counts as 0."""
    import json

    import zipper.train as train
    from zipper.train import latest_checkpoint

    clock = [0.0]
    monkeypatch.setattr(train.time, "time", lambda: clock[0])

    def tick(m, b):  # each step takes 10 s
        clock[0] += 10.0
        return m(b).loss

    cfg = TrainConfig(steps=2, lr=1e-3, warmup_steps=1)
    first = fit(_new_zip(), tick, _stream, cfg, tmp_path)
    assert first["wall_s"] == first["segment_wall_s"] == 20
    second = fit(_new_zip(), tick, _stream, dataclasses.replace(cfg, steps=3), tmp_path)
    assert (second["wall_s"], second["segment_wall_s"]) == (30, 10)
    state_file = latest_checkpoint(tmp_path / "checkpoints") / "trainer_state.json"
    state = json.loads(state_file.read_text())
    del state["wall_s"]  # as an older checkpoint
    state_file.write_text(json.dumps(state))
    third = fit(_new_zip(), tick, _stream, dataclasses.replace(cfg, steps=4), tmp_path)
    assert (third["wall_s"], third["segment_wall_s"]) == (10, 10)


def test_the_progress_bar_reaches_the_steps_and_a_resumed_one_starts_at_the_checkpoint(tmp_path, monkeypatch):
    import tqdm.auto

    bars = []  # (initial, n, total) of each bar when it closes

    class Recording(tqdm.auto.tqdm):
        def close(self):
            if not self.disable:
                bars.append((self.initial, self.n, self.total))
            super().close()

    monkeypatch.setattr(tqdm.auto, "tqdm", Recording)
    cfg = TrainConfig(steps=3, lr=1e-3, warmup_steps=1)
    fit(_new_zip(), _loss, _stream, cfg, tmp_path)
    fit(_new_zip(), _loss, _stream, dataclasses.replace(cfg, steps=5), tmp_path)
    assert bars == [(0, 3, 3), (3, 5, 5)]
