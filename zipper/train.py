"""One training loop for every recipe (zips, speech-tower pretraining, baselines), on accelerate.

The same code runs on CPU, one GPU (bf16 when available) or several processes (``torchrun
--nproc_per_node N``, ``accelerate launch``; gloo on CPU, NCCL on GPUs). With N processes each step
takes N per-rank batches (rank r gets batches r, r+N, ... of the stream, so the global batch is N x
batch_size and resuming stays exact), DDP averages the gradients of the trainable tensors only (frozen
towers have ``requires_grad=False`` and DDP never registers them), and rank 0 alone writes checkpoints.
Checkpoints hold only trainable tensors + optimizer state, as safetensors, written to a temporary
directory and renamed into place with a ``COMPLETE`` marker; `fit` resumes from the latest complete one,
printing the training settings the resume changes (e.g. a longer schedule, another seed), and refuses to
go on from a finished checkpoint under changed settings (its weights would be tested under a new label).
Ctrl-C (SIGINT) or SIGTERM (a scheduler's pre-emption) ends the current step, writes a checkpoint and
raises :class:`TrainingInterrupted`: the same command resumes from there (a second Ctrl-C stops at once).
With ``best_metric`` set, the weights of the best evaluation are kept in ``best/step-N`` and loaded back at
the end (HF Trainer's ``load_best_model_at_end``; a run cut by its time budget keeps its last weights if
their evaluation beats the best), and ``patience`` stops training once that many
evaluations in a row have not improved on it (early stopping); a resumed run keeps both counts.
"""
from __future__ import annotations

import dataclasses
import itertools
import json
import math
import os
import shutil
import signal
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterator

import torch

COMPLETE = "COMPLETE"


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped by SIGINT / SIGTERM after checkpointing its last finished step."""


class StopRequest:
    """While active, SIGINT / SIGTERM only set ``signum``: the loop finishes its step and checkpoints. A
    second signal raises KeyboardInterrupt at once. Signal handlers exist only in the main thread."""

    def __init__(self):
        self.signum, self._old = None, {}

    def __enter__(self) -> "StopRequest":
        if threading.current_thread() is threading.main_thread():
            self._old = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)}
        return self

    def _handle(self, signum, frame) -> None:
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum

    def __exit__(self, *exc) -> None:
        for s, handler in self._old.items():
            signal.signal(s, handler)


@dataclass
class TrainConfig:
    steps: int = 1000
    batch_size: int = 8
    lr: float = 3e-4
    weight_decay: float = 0.0
    warmup_steps: int = 50
    grad_clip: float = 1.0
    eval_every: int = 0  # 0 = only at the end
    save_every: int = 0  # 0 = only at the end
    log_every: int = 10
    seed: int = 0
    mixed_precision: str = "auto"  # auto = bf16 on a GPU that supports it, else no
    max_minutes: float = 0.0  # > 0: stop (evaluate, checkpoint) once this much wall time has passed
    # > 0: stop after this step as a time budget would, on the schedule of `steps`: the step a max_minutes run
    # reached on one machine, reached on any machine (a resume without it goes on to `steps`)
    stop_step: int = 0
    gate_lr_mult: float = 1.0  # learning-rate multiplier for the zero-initialised tanh gates (names ending "gate")
    best_metric: str = ""  # an eval_fn metric: end with the weights of its best evaluation ("" = the last)
    best_mode: str = "min"  # "min" (a loss, WER) or "max" (e.g. text_info)
    patience: int = 0  # > 0: stop after this many evaluations in a row without a better best_metric

    def __post_init__(self) -> None:
        if self.best_mode not in ("min", "max"):
            raise ValueError(f"best_mode must be 'min' or 'max', got {self.best_mode!r}")
        if self.patience < 0 or (self.patience and not self.best_metric):
            raise ValueError(f"patience must be >= 0 and needs a best_metric, got {self.patience}")
        if self.log_every < 1:
            raise ValueError(f"log_every must be >= 1, got {self.log_every}")
        if self.stop_step < 0:
            raise ValueError(f"stop_step must be >= 0, got {self.stop_step}")


def _lr_lambda(cfg: TrainConfig) -> Callable[[int], float]:
    def f(step: int) -> float:  # linear warmup, cosine decay to 10%
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return f


def model_signature(model) -> dict:
    """What a checkpoint must have been trained with to resume into ``model``: its config, without the
    tower load references (a tower may move). Models without ``config_dict()`` give {} (unchecked)."""
    describe = getattr(model, "config_dict", None)
    return {k: v for k, v in describe().items() if k not in ("towers", "text_tower")} if describe else {}


def _signature_defaults(model) -> dict:
    """The model config's field defaults, as JSON data: what a checkpoint written before a field existed
    was trained with (from_pretrained reads a saved config the same way)."""
    config = getattr(model, "config", None)
    if not dataclasses.is_dataclass(config):
        return {}
    defaults = {f.name: f.default if f.default is not dataclasses.MISSING else f.default_factory()
                for f in dataclasses.fields(config)
                if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING}
    return json.loads(json.dumps(defaults))


def _recorded_from_towers(model) -> set[str]:
    """The signature keys a model reads from its towers (zipper.config.RECORDED fields, a single decoder's
    RECORDED_FROM_TOWERS): they have no default that a checkpoint predating them could have run with."""
    config = getattr(model, "config", None)
    if dataclasses.is_dataclass(config):
        return {f.name for f in dataclasses.fields(config) if f.metadata.get("recorded_from_towers")}
    return set(getattr(model, "RECORDED_FROM_TOWERS", ()))


def _trainable(model) -> dict[str, torch.Tensor]:
    return {n: p for n, p in model.named_parameters() if p.requires_grad}


def _trainable_tensors(model) -> dict[str, torch.Tensor]:
    """The trainable weights as safetensors stores them (CPU, contiguous)."""
    return {n: p.detach().cpu().contiguous() for n, p in _trainable(model).items()}


def save_checkpoint(dirpath: Path, model, optimizer, scheduler, step: int, extra: dict | None = None) -> Path:
    """Write ``checkpoints/step-N`` atomically: a temp dir with the COMPLETE marker, fsync, rename. Re-saving a
    step moves the previous copy aside (``.old-step-N``) until the new one is in place, so a kill between the
    renames leaves a complete copy (`latest_checkpoint` reads it; the next save restores or removes it)."""
    from safetensors.torch import save_file

    final = dirpath / f"step-{step:07d}"
    dirpath.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=dirpath))
    try:
        names = {id(p): n for n, p in _trainable(model).items()}
        save_file(_trainable_tensors(model), str(tmp / "trainable.safetensors"))
        opt_tensors, opt_meta = {}, {}
        for group in optimizer.param_groups:
            for p in group["params"]:
                for k, v in optimizer.state.get(p, {}).items():
                    if torch.is_tensor(v):
                        opt_tensors[f"{names[id(p)]}::{k}"] = v.detach().cpu().contiguous()
                    else:
                        opt_meta[f"{names[id(p)]}::{k}"] = v
        save_file(opt_tensors or {"_empty": torch.zeros(0)}, str(tmp / "optimizer.safetensors"))
        state = {"step": step, "scheduler": scheduler.state_dict(), "optimizer_scalars": opt_meta,
                 "torch_rng": torch.get_rng_state().tolist(), **(extra or {})}
        (tmp / "trainer_state.json").write_text(json.dumps(state))
        (tmp / COMPLETE).write_text("ok\n")  # the rename below publishes a complete checkpoint
        for f in tmp.iterdir():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        _swap_in(tmp, final)
        _restore_aside(dirpath)
        for old in sorted(p for p in dirpath.glob("step-*") if p != final)[:-1]:  # keep the latest two
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return final


def _save_best(best_dir: Path, model, step: int, metrics: dict) -> None:
    """The trainable weights of the best evaluation so far, in ``best/step-N`` (temp dir, then rename)."""
    from safetensors.torch import save_file

    best_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=best_dir))
    save_file(_trainable_tensors(model), str(tmp / "trainable.safetensors"))
    (tmp / "metrics.json").write_text(json.dumps(metrics) + "\n")
    _swap_in(tmp, best_dir / f"step-{step:07d}")  # a resumed run may re-evaluate this step


def _prune_best(best_dir: Path, keep: int | None = None, after: int | None = None) -> None:
    """Remove kept weights other than step ``keep`` (once a checkpoint records it), or those of steps after
    ``after`` (on resume: evaluations the resumed run will redo)."""
    for d in best_dir.glob("step-*") if best_dir.exists() else []:
        n = int(d.name.split("-")[1])
        if (keep is not None and n != keep) or (after is not None and n > after):
            shutil.rmtree(d, ignore_errors=True)


def _swap_in(tmp: Path, final: Path) -> None:
    """Rename ``tmp`` to ``final``; a previous ``final`` stays whole, as ``.old-<name>``, until the new one
    is in place (a kill between the renames loses neither)."""
    aside = final.with_name(f".old-{final.name}")
    if final.exists():
        shutil.rmtree(aside, ignore_errors=True)
        final.rename(aside)
    tmp.rename(final)
    shutil.rmtree(aside, ignore_errors=True)


def _restore_aside(dirpath: Path) -> None:
    """A ``.old-step-N`` left by a re-save killed between its renames: removed if step-N is complete, else
    renamed back to step-N."""
    for aside in dirpath.glob(".old-step-*"):
        final = dirpath / aside.name[len(".old-"):]
        if not (final / COMPLETE).exists():
            shutil.rmtree(final, ignore_errors=True)
            aside.rename(final)
        else:
            shutil.rmtree(aside, ignore_errors=True)


def latest_checkpoint(dirpath: Path) -> Path | None:
    """The latest complete ``step-N``, or the complete ``.old-step-N`` a killed re-save left in its place."""
    if not dirpath.exists():
        return None
    done = {p.name[len(".old-"):]: p for p in dirpath.glob(".old-step-*") if (p / COMPLETE).exists()}
    done.update({p.name: p for p in dirpath.glob("step-*") if (p / COMPLETE).exists()})
    return done[max(done)] if done else None


def load_checkpoint(path: Path, model, optimizer, scheduler) -> dict:
    from safetensors.torch import load_file

    params, weights = _trainable(model), _read_trainable(model, path / "trainable.safetensors")
    state = json.loads((path / "trainer_state.json").read_text())
    saved, now = state.get("model_config"), model_signature(model)
    if saved is not None:  # a key the checkpoint lacks is a field added since: it ran with the default, or
        # (a fact recorded from the towers, which has none) with what the towers say now, unchecked
        saved = {**{k: v for k, v in _signature_defaults(model).items() if k in now},
                 **{k: now[k] for k in _recorded_from_towers(model) if k in now}, **saved}
    if saved is not None and saved != now:  # same tensors, different meaning (e.g. another prefix): refuse
        diff = sorted(k for k in set(saved) | set(now) if saved.get(k) != now.get(k))
        raise ValueError(f"checkpoint {path} was trained with a different model config ({', '.join(diff)}: "
                         f"{[saved.get(k) for k in diff]} there, {[now.get(k) for k in diff]} now); "
                         "train into a fresh output directory")
    opt_tensors = load_file(str(path / "optimizer.safetensors"))
    _copy_into(params, weights)
    for n, p in params.items():
        entry = {k.split("::", 1)[1]: v for k, v in opt_tensors.items() if k.startswith(n + "::")}
        entry.update({k.split("::", 1)[1]: v for k, v in state["optimizer_scalars"].items() if k.startswith(n + "::")})
        if entry:
            optimizer.state[p] = entry
    scheduler.load_state_dict(state["scheduler"])
    for group, lr in zip(optimizer.param_groups, scheduler.get_last_lr()):  # load_state_dict does not do this
        group["lr"] = lr
    torch.set_rng_state(torch.tensor(state["torch_rng"], dtype=torch.uint8))
    return state


# TrainConfig fields a resume may change without changing what the run means; notes on what a change does
_UNCOMPARED = ("max_minutes", "stop_step", "log_every", "save_every")
_CHANGE_NOTES = {"steps": "cosine schedule recomputed", "warmup_steps": "schedule recomputed",
                 "lr": "not applied: a resume keeps the checkpoint's learning rates", "gate_lr_mult": "not applied"}


def changed_settings(state: dict, cfg: TrainConfig, settings: dict) -> list[str]:
    """The training settings a resume changes, e.g. ``["steps 4500 -> 7000 (cosine schedule recomputed)"]``:
    ``cfg``'s fields (but the time budget and logging) and the caller's ``settings`` that differ from those
    the checkpoint ``state`` recorded; a setting the checkpoint predates is not compared."""
    was = {**(state.get("config") or {}), **(state.get("settings") or {})}
    now = json.loads(json.dumps({**{k: v for k, v in asdict(cfg).items() if k not in _UNCOMPARED}, **settings}))
    return [f"{k} {was[k]} -> {v}" + (f" ({_CHANGE_NOTES[k]})" if k in _CHANGE_NOTES else "")
            for k, v in now.items() if k in was and was[k] != v]


def fit(model, loss_fn: Callable, batch_stream: Callable[[int], Iterator], cfg: TrainConfig, out_dir: str | Path,
        eval_fn: Callable[[], dict] | None = None, desc: str = "train", end_training: bool = True,
        settings: dict | None = None) -> dict:
    """Train ``model`` for ``cfg.steps`` steps, resuming from ``out_dir/checkpoints`` if possible.

    Args:
        loss_fn: ``loss_fn(model, batch) -> scalar loss``; ``model`` may be DDP-wrapped (call it, or use
            ``getattr(model, "module", model)`` for attributes).
        batch_stream: ``batch_stream(start) -> iterator of batches`` (seeded, resumable: the stream after
            ``start`` batches); with N processes it is called with ``start = step * N``.
        eval_fn: called on every rank every ``cfg.eval_every`` steps and at the end (shard the work with
            `zipper.distributed.map_sharded`); returns a dict of metrics.
        end_training: end the run (accelerate's ``end_training``: destroys the process group). Pass False
            to keep it for a sharded evaluation afterwards, and call `end_training` yourself.
        settings: more settings the run's meaning depends on (JSON data, e.g. the data fraction), recorded in
            checkpoints and compared on resume like ``cfg``'s fields.
    A resume prints the settings it changes (`changed_settings`), and refuses to relabel a checkpoint that
    has nothing left to train (at ``cfg.steps``, or stopped early) with changed settings, or one past
    ``cfg.steps``: a ValueError.
    Returns: ``{"history": [...] (loss averaged over ranks), "evals": [...], "wall_s" (all segments of a resumed
    run), "segment_wall_s" (this call's), "steps", "best" (the best scheduled evaluation), "kept" (the step
    and value of the weights the model ends with; None without ``best_metric``), "stopped_early"}``.
    """
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs
    from tqdm.auto import tqdm

    mp = cfg.mixed_precision
    if mp == "auto":
        mp = "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"
    # a joint (ASR + TTS) zip leaves one direction's blocks unused in each batch: let DDP see that
    # cpu=True on a machine without a GPU: accelerate only starts a multi-process CPU (gloo) group then
    accelerator = Accelerator(cpu=not torch.cuda.is_available(), mixed_precision=mp, kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)])
    rank, world = accelerator.process_index, accelerator.num_processes
    torch.manual_seed(cfg.seed)
    out_dir, ckpt_dir = Path(out_dir), Path(out_dir) / "checkpoints"
    model.train()  # first: a ZipperModel re-applies its own trainability (towers may be shared with another zip)
    params = _trainable(model)
    gates = [p for n, p in params.items() if n.endswith("gate")]
    groups = [{"params": [p for n, p in params.items() if not n.endswith("gate")]}]
    if gates:  # short budgets: zero-init gates open slowly at the blocks' learning rate
        groups.append({"params": gates, "lr": cfg.lr * cfg.gate_lr_mult, "weight_decay": 0.0})
    optimizer = torch.optim.AdamW([g for g in groups if g["params"]], lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(cfg))
    start, history, evals, eval_pending, stream_start = 0, [], [], False, None
    changed, wall_before = [], 0.0  # wall_before: seconds of the segments before this one
    best_dir, best, bad_evals = out_dir / "best", None, 0  # best: {"step", "value"} of best_metric
    last = latest_checkpoint(ckpt_dir)
    if last is not None:
        state = load_checkpoint(last, model, optimizer, scheduler)
        start, history, evals = state["step"], state.get("history", []), state.get("evals", [])
        best, bad_evals = state.get("best"), state.get("bad_evals", 0)
        eval_pending = bool(state.get("eval_pending"))
        was = state.get("config") or {}
        if (was.get("best_metric", ""), was.get("best_mode", "min")) != (cfg.best_metric, cfg.best_mode):
            best, bad_evals = None, 0  # another metric now: the old best is no yardstick
        stream_start = state.get("batches")  # None: an older checkpoint, written by as many processes as now
        wall_before = float(state.get("wall_s", 0.0))  # 0: an older checkpoint
        changed = changed_settings(state, cfg, settings or {})
        accelerator.print(f"[{desc}] resuming from {last} (step {start})"
                          + (f" with changed settings: {', '.join(changed)}" if changed else ""))
        if accelerator.is_main_process:
            _prune_best(best_dir, after=start)

    def patience_spent() -> bool:
        return bool(cfg.patience) and bad_evals >= cfg.patience

    if start > cfg.steps:
        raise ValueError(f"checkpoint {last} is at step {start}, past the {cfg.steps} steps asked for: ask for at "
                         "least that many, or train into a fresh output directory (--out)")
    if cfg.stop_step and start > cfg.stop_step:
        raise ValueError(f"checkpoint {last} is at step {start}, past the stop step {cfg.stop_step}: stop later, "
                         "or train into a fresh output directory (--out)")
    stop_at = min(cfg.steps, cfg.stop_step or cfg.steps)  # where this call stops (start == stop_at: nothing to train)
    if changed and (start == cfg.steps or patience_spent()):  # its weights would be tested under a new label
        raise ValueError(f"checkpoint {last} has finished training (step {start}) with other settings than these "
                         f"({', '.join(changed)}); train into a fresh output directory (--out)")
    if patience_spent():  # this run already stopped early: nothing left to train
        accelerator.print(f"[{desc}] stopped early before (no better {cfg.best_metric} in {bad_evals} evaluations)")
        start = cfg.steps
    model, optimizer = accelerator.prepare(model, optimizer)
    raw = accelerator.unwrap_model(model)
    # batches the run has drawn so far, over all its processes: a resume with another process count goes on
    # from there (each step draws one batch per process) instead of replaying or skipping batches
    stream_start = start * world if stream_start is None else int(stream_start)

    def scheduled(n: int) -> bool:  # an evaluation an uninterrupted run makes: every eval_every steps and the last
        return n == cfg.steps or bool(cfg.eval_every) and n % cfg.eval_every == 0

    def beats(value: float, than: float) -> bool:  # a better best_metric value, in its best_mode
        return value < than if cfg.best_mode == "min" else value > than

    def evaluate(n: int) -> None:
        """Evaluate after step ``n``. Only scheduled evaluations compete for the best weights and count
        towards patience; one at the end of a time budget does neither, so that a run trained in several
        budgets keeps the best step and stops where one uninterrupted run would (its weights are still kept
        at the end when they beat the best: below)."""
        nonlocal best, bad_evals
        model.eval()
        metrics = {"step": n, **eval_fn()}
        evals.append(metrics)
        accelerator.print(f"[{desc}] step {n}: " + ", ".join(f"{k}={v}" for k, v in metrics.items() if k != "step"))
        if not cfg.best_metric:
            return
        if cfg.best_metric not in metrics:
            raise KeyError(f"best_metric {cfg.best_metric!r} is not among the evaluation's metrics "
                           f"{sorted(k for k in metrics if k != 'step')}")
        if not scheduled(n):
            return
        value = float(metrics[cfg.best_metric])
        if best is None or beats(value, best["value"]):
            best, bad_evals = {"step": n, "value": value}, 0
            if accelerator.is_main_process:
                _save_best(best_dir, raw, n, metrics)
        else:
            bad_evals += 1
            if patience_spent():
                accelerator.print(f"[{desc}] early stop at step {n}: no better {cfg.best_metric} "
                                  f"than {best['value']} (step {best['step']}) in {bad_evals} evaluations")

    def checkpoint(n: int, pending: bool = False) -> None:
        save_checkpoint(ckpt_dir, raw, optimizer, scheduler, n, {
            "history": history, "evals": evals, "config": asdict(cfg), "model_config": model_signature(raw),
            "best": best, "bad_evals": bad_evals, "eval_pending": pending, "settings": settings or {},
            "batches": stream_start + (n - start) * world, "wall_s": round(wall_before + time.time() - t0, 1)})
        if best is not None:
            _prune_best(best_dir, keep=best["step"])

    t0 = time.time()
    if eval_pending and eval_fn is not None and start < cfg.steps:
        # a Ctrl-C stopped the run on an evaluation step before it evaluated: evaluate those weights now
        evaluate(start)
        if accelerator.is_main_process:
            checkpoint(start)
        if patience_spent():
            start = cfg.steps
    stream = itertools.islice(batch_stream(stream_start), rank, None, world)  # this rank's share
    bar = tqdm(initial=start, total=cfg.steps, desc=desc, disable=not accelerator.is_main_process, dynamic_ncols=True)
    stopped = None
    with StopRequest() as stop, bar:
        for step in range(start, stop_at):
            model.train()
            with accelerator.autocast():
                loss = loss_fn(model, next(stream))
            accelerator.backward(loss)
            if cfg.grad_clip:
                accelerator.clip_grad_norm_(list(_trainable(raw).values()), cfg.grad_clip)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            history.append(round(accelerator.reduce(loss.detach(), "mean").item(), 5))
            bar.update(1)  # before any break below: the bar reaches cfg.steps
            if (step + 1) % cfg.log_every == 0:
                bar.set_postfix(loss=f"{sum(history[-cfg.log_every:]) / cfg.log_every:.3f}", lr=f"{scheduler.get_last_lr()[0]:.1e}")
            out_of_time = bool(cfg.max_minutes) and time.time() - t0 > 60 * cfg.max_minutes
            stopping = stop.signum is not None
            if world > 1:  # every rank must stop at the same step, or the others hang
                flags = torch.tensor([float(out_of_time), float(stopping)], device=accelerator.device)
                out_of_time, stopping = (accelerator.reduce(flags, "sum") > 0).tolist()
            is_last = step + 1 == stop_at or out_of_time
            if stopping and not is_last:  # a signal: checkpoint this step and stop; its evaluation waits for the resume
                if accelerator.is_main_process:
                    checkpoint(step + 1, pending=eval_fn is not None and scheduled(step + 1))
                accelerator.print(f"\n[{desc}] interrupted: checkpoint at step {step + 1}")
                stopped = stop.signum or signal.SIGINT
                break
            if eval_fn is not None and (is_last or scheduled(step + 1)):
                evaluate(step + 1)
                is_last = is_last or patience_spent()  # checkpoint below, then leave the loop
            if accelerator.is_main_process and (is_last or (cfg.save_every and (step + 1) % cfg.save_every == 0)):
                checkpoint(step + 1)
            if out_of_time:
                accelerator.print(f"[{desc}] time budget of {cfg.max_minutes} min reached at step {step + 1}")
            elif step + 1 == cfg.stop_step < cfg.steps:
                accelerator.print(f"[{desc}] stopped at step {step + 1} of the {cfg.steps}-step schedule (stop_step)")
            if is_last:
                break
        late = stop.signum  # a signal during the last step or its evaluation: the checkpoint is written
    accelerator.wait_for_everyone()  # rank 0's checkpoint is complete before any rank returns
    if stopped is None:  # a late signal stops here too, rather than go on to a caller's long test evaluation
        if world > 1:  # on every rank alike
            flag = torch.tensor([float(late is not None)], device=accelerator.device)
            late = signal.SIGINT if accelerator.reduce(flag, "sum").item() > 0 else None
        stopped = late
    if stopped is not None:
        raise TrainingInterrupted(f"{signal.Signals(stopped).name} at step {len(history)}: checkpoint written to "
                                  f"{ckpt_dir}; run the same command again to resume")
    kept = best
    end = evals[-1] if evals and evals[-1]["step"] == len(history) else None
    if best is not None and end is not None and not scheduled(end["step"]):
        # a time budget's last evaluation does not become `best` (above), but the weights it measured are the
        # ones the run ends with: when they are better, they are kept rather than thrown away for older ones
        value = float(end[cfg.best_metric])
        if beats(value, best["value"]):
            kept = {"step": end["step"], "value": value}
            accelerator.print(f"[{desc}] kept the weights of the last step {end['step']}: their {cfg.best_metric} "
                              f"({value}), at the time budget's end, beats the best scheduled one ({best['value']}, "
                              f"step {best['step']})")
    if kept is not None and kept["step"] != len(history):
        _load_trainable(raw, best_dir / f"step-{kept['step']:07d}" / "trainable.safetensors")
        accelerator.print(f"[{desc}] loaded the weights of step {kept['step']}, the best {cfg.best_metric} "
                          f"({kept['value']}), not those of the last step {len(history)}")
    if end_training:
        accelerator.end_training()
    segment = time.time() - t0
    return {"history": history, "evals": evals, "wall_s": round(wall_before + segment, 1),
            "segment_wall_s": round(segment, 1), "steps": len(history), "best": best, "kept": kept,
            "stopped_early": patience_spent()}


def _read_trainable(model, path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    weights = load_file(str(path))
    if set(weights) != set(_trainable(model)):
        raise ValueError(f"{path} does not match the model's trainable parameters")
    return weights


def _copy_into(params: dict[str, torch.Tensor], weights: dict[str, torch.Tensor]) -> None:
    with torch.no_grad():
        for n, p in params.items():
            p.copy_(weights[n])


def _load_trainable(model, path: Path) -> None:
    _copy_into(_trainable(model), _read_trainable(model, path))
