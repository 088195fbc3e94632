"""Multi-process training on one machine: 2 ranks (gloo, CPU) via accelerate's ``debug_launcher``.

A DDP step on two per-rank batches must equal one single-process step on the mean of their losses,
leave both ranks with identical zip parameters, never touch (or register) the frozen towers, and
sharded evaluation must gather exactly what one process computes. The recipe-level run with
``torchrun --nproc_per_node 2`` is in tests/zipper/test_recipe.py.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import tiny_tower
from zipper import Segment, ZipperModel
from zipper.train import TrainConfig, fit

STEPS = 2


def _model():
    speech = tiny_tower("llama", "speech", vocab=40, hidden=32, layers=2, seed=1)
    text = tiny_tower("gpt2", "text", vocab=56, hidden=32, layers=2, seed=2)
    return ZipperModel.from_towers([speech, text], directions=["speech->text", "text->speech"])


def _batch(k: int):  # per-rank batch number k of the stream; ASR and TTS alternate (a joint zip)
    g = torch.Generator().manual_seed(k)
    s, t = torch.randint(3, 40, (2, 6), generator=g), torch.randint(3, 56, (2, 5), generator=g)
    if k % 2 == 0:
        return [Segment("speech", s), Segment("text", t, loss=True)]
    return [Segment("text", t), Segment("speech", s, loss=True)]


def _stream(start: int):
    k = start
    while True:
        yield _batch(k)
        k += 1


def _cfg():
    return TrainConfig(steps=STEPS, batch_size=2, lr=1e-2, warmup_steps=1, log_every=1, seed=0)


def _frozen(model):
    return {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}


def _ranks_fn(out: str):
    """Runs in each of the 2 forked processes."""
    import torch.distributed as dist
    from accelerate.state import AcceleratorState
    from safetensors.torch import save_file

    from zipper.distributed import map_sharded, rank_and_world

    AcceleratorState._reset_state(reset_partial_state=True)  # forget the parent's single-process state
    torch.manual_seed(0)
    model = _model()
    with torch.no_grad():  # open the gates so the second step's gradients reach every block
        for n, p in model.named_parameters():
            if n.endswith("gate"):
                p.fill_(0.5)
    frozen = _frozen(model)
    seen = {}

    def loss_fn(m, segments):
        seen["ddp"] = type(m).__name__
        if "ddp_bytes" not in seen and hasattr(m, "_get_ddp_logging_data"):
            seen["ddp_bytes"] = m._get_ddp_logging_data().get("total_parameter_size_bytes")
        return m(segments).loss

    res = fit(model, loss_fn, _stream, _cfg(), Path(out) / "run", end_training=False)
    rank, world = rank_and_world()
    params = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    every = [None] * world
    dist.all_gather_object(every, params)
    same_on_ranks = all(torch.equal(every[0][n], e[n]) for e in every for n in params)
    frozen_untouched = all(torch.equal(frozen[n], p) for n, p in model.named_parameters() if not p.requires_grad)
    frozen_no_grad = all(p.grad is None for p in model.parameters() if not p.requires_grad)
    # sharded evaluation: 5 utterances over 2 ranks, gathered back in order
    prompts = [torch.randint(3, 40, (1, 4 + i), generator=torch.Generator().manual_seed(100 + i)) for i in range(5)]

    def greedy(chunk):
        with torch.no_grad():
            return [model.generate([Segment("speech", p)], ["text"], max_new_tokens=4)[0].input_ids[0].tolist()
                    for p in chunk]

    gathered = map_sharded(greedy, prompts)
    one_process = greedy(prompts)  # the same model on every rank: what a single process computes
    if rank == 0:
        save_file(params, str(Path(out) / "ddp.safetensors"))
        trainable_bytes = sum(p.numel() * p.element_size() for p in params.values())
        (Path(out) / "ddp.json").write_text(json.dumps({
            "world": world, "same_on_ranks": same_on_ranks, "frozen_untouched": frozen_untouched,
            "frozen_no_grad": frozen_no_grad, "history": res["history"], "wrapper": seen.get("ddp"),
            "ddp_bytes": seen.get("ddp_bytes"), "trainable_bytes": trainable_bytes,
            "gathered": gathered, "one_process": one_process}))
    dist.barrier()
    dist.destroy_process_group()


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    """debug_launcher forks; a fork of this pytest process (whose OpenMP pool earlier tests have used)
    deadlocks in its first matmul, so the launcher runs from a fresh interpreter."""
    out = tmp_path_factory.mktemp("ddp")
    code = ("import sys; from accelerate import debug_launcher; from tests.reliability.test_distributed import _ranks_fn; "
            "debug_launcher(_ranks_fn, args=(sys.argv[1],), num_processes=2)")
    proc = subprocess.run([sys.executable, "-c", code, str(out)], cwd=Path(__file__).parents[2], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, json.loads((out / "ddp.json").read_text())


def test_two_ranks_wrap_ddp_and_agree(ddp_run):
    _, r = ddp_run
    assert r["world"] == 2 and r["wrapper"] == "DistributedDataParallel"
    assert r["same_on_ranks"], "zip parameters differ between ranks after DDP steps"
    assert r["frozen_untouched"] and r["frozen_no_grad"]
    if r["ddp_bytes"] is not None:  # DDP registered the trainable tensors only: frozen towers are never synced
        assert r["ddp_bytes"] == r["trainable_bytes"]


def test_ddp_steps_equal_single_process_mean_loss(ddp_run):
    """Rank r takes stream batches r, r+2, ...: DDP's averaged gradient is the gradient of the mean loss."""
    from safetensors.torch import load_file

    out, r = ddp_run
    torch.manual_seed(0)
    model = _model()
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n.endswith("gate"):
                p.fill_(0.5)
    frozen = _frozen(model)

    def pairs(start):  # one process, the same two batches per step as the two ranks together
        k = 2 * start
        while True:
            yield _batch(k), _batch(k + 1)
            k += 2

    res = fit(model, lambda m, b: (m(b[0]).loss + m(b[1]).loss) / 2, pairs, _cfg(), out / "single")
    ddp = load_file(str(out / "ddp.safetensors"))
    params = {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}
    assert set(params) == set(ddp)
    torch.manual_seed(0)
    init = dict(_model().named_parameters())
    moved = sum(not torch.equal(p, init[n]) for n, p in params.items() if not n.endswith("gate"))
    assert moved > 0.5 * len(params), "too few parameters changed for the comparison to mean anything"
    for n, p in params.items():  # atol: thread counts (which earlier tests may set) change the float sums' order
        torch.testing.assert_close(ddp[n], p, rtol=1e-5, atol=1e-5, msg=lambda m: f"{n}: {m}")
    assert res["history"] == pytest.approx(r["history"], rel=1e-5)  # logged loss = mean over ranks
    assert all(torch.equal(frozen[n], p) for n, p in model.named_parameters() if not p.requires_grad)


def test_sharded_evaluation_gathers_in_order(ddp_run):
    """map_sharded over 2 ranks returns every item's result, in the original order, to every rank."""
    _, r = ddp_run
    assert len(r["gathered"]) == 5 and r["gathered"] == r["one_process"]
    assert len({tuple(x) for x in r["gathered"]}) > 1  # the prompts' outputs differ, so order is checked
