"""Int8 inference on the CPU: a frozen tower's linear layers (its LM head included) run as dynamic int8 GEMMs.

The fused CTC search (zipper/text_scorer.py) runs hundreds of text-tower forwards of a few tokens each. At that
size an fp32 GEMM of SmolLM2's 135M weights is bound by reading them (its 49,152-token LM head alone is 113 MB),
and the int8 kernels of torch's x86 quantized engine (fbgemm) read a quarter of the bytes: weights int8 per output
channel, each call's activations int8 per tensor. What that costs in WER and gains in time is measured together by
``python -m benchmarks.int8``.

The original weights stay where they were, as parameters under their keys, so the state dict and saving are
unchanged; the int8 copy is made once, at `quantize_linears`, so a module with trainable parameters is refused
(a copy made before training would go stale).
"""
from __future__ import annotations

import torch
from torch import nn

ENGINES = ("x86", "fbgemm")  # torch's quantized engines with per-channel dynamic linear kernels for x86 CPUs


class Int8Linear(nn.Module):
    """``nn.Linear`` computed by ``torch.ops.quantized.linear_dynamic`` from an int8 copy of its weight (symmetric,
    one scale per output channel). ``weight`` and ``bias`` are the wrapped layer's own parameters, kept for the
    state dict (and for tied embeddings), never read by ``forward``."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.weight, self.bias = linear.weight, linear.bias
        w = linear.weight.detach().float()  # (out, in)
        scale = (w.abs().amax(1) / 127).clamp_min(1e-12).double()  # (out,)
        qw = torch.quantize_per_channel(w, scale, torch.zeros(len(scale), dtype=torch.long), 0, torch.qint8)
        bias = None if linear.bias is None else linear.bias.detach().float()
        self._packed = torch.ops.quantized.linear_prepack(qw, bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # reduce_range: 7-bit activations, as fbgemm's AVX2 kernels need to never overflow their 16-bit sums
        y = torch.ops.quantized.linear_dynamic(x.float().reshape(-1, self.in_features), self._packed, True)
        return y.reshape(*x.shape[:-1], self.out_features).to(x.dtype)  # (..., out): one vector too, as nn.Linear

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8"


def quantize_linears(module: nn.Module) -> int:
    """Every ``nn.Linear`` inside ``module`` (in place) -> `Int8Linear`; returns how many. For inference on the
    CPU: refused for parameters on another device, for trainable parameters, and where torch has no x86 engine."""
    if (engine := torch.backends.quantized.engine) not in ENGINES:
        if not any(e in torch.backends.quantized.supported_engines for e in ENGINES):
            raise RuntimeError(f"int8 inference needs torch's x86 quantized engine (fbgemm); this torch has "
                               f"{torch.backends.quantized.supported_engines}")
        raise RuntimeError(f"int8 inference needs torch's x86 quantized engine: set torch.backends.quantized.engine "
                           f"to one of {ENGINES} (it is {engine!r})")
    params = list(module.parameters())
    if any(p.device.type != "cpu" for p in params):
        raise ValueError("int8 inference runs on the CPU: move the model there first (on a GPU, use bf16)")
    if any(p.requires_grad for p in params):
        raise ValueError("int8 inference is for frozen modules: its int8 weights are copies that training would "
                         "leave stale (call module.requires_grad_(False) first)")
    targets = [(parent, name, child) for parent in module.modules() for name, child in parent.named_children()
               if type(child) is nn.Linear]
    for parent, name, child in targets:
        setattr(parent, name, Int8Linear(child))
    return len(targets)


def quantize_text_decoder(model) -> int:
    """`quantize_linears` on the text decoder, frozen first: a zip's text tower, or a single decoder's whole LM (its
    ``tower("text")`` too). What ``zipper transcribe --int8`` and ``zipper eval --int8`` run."""
    return quantize_linears(model.tower("text").model.requires_grad_(False))
