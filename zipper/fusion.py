"""The trainable parts of a zip: gated cross-attention blocks and the projections around them.

A `GatedCrossAttention` block sits on the output of one decoder layer of the attending tower and
reads the hidden states of the other tower's aligned layer (Flamingo / Zipper):

    m  = ReLU(MLP(LayerNorm(memory)))                  # other tower's states -> this tower's width
    x  = x + tanh(a_attn) * CrossAttn(LN(x), m)         # (B, T, D)
    x  = x + tanh(a_ff)   * FFN(LN(x))

Both gates start at exactly zero, so at initialisation every block is the identity and the zipped
model reproduces each pretrained tower bit for bit; training opens the gates only as far as the
other modality helps (the frozen tower is never disturbed by random initial blocks).

Optionally (``ZipperConfig.guided_attention``) a block also reports how much of its attention falls
off the diagonal of the two segments (:func:`diagonal_guide`), for the loss to penalise: speech and its
transcript are aligned monotonically, and this prior is how attention-based TTS is made to learn its
alignment quickly (Tachibana et al., 2018, "DC-TTS", guided attention loss).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def relu_mlp(d_in: int, d_out: int, layers: int) -> nn.Sequential:
    """``layers`` Linear layers, each followed by ReLU: the paper's h = ReLU(g(m))."""
    mods: list[nn.Module] = []
    for i in range(layers):
        mods += [nn.Linear(d_in if i == 0 else d_out, d_out), nn.ReLU()]
    return nn.Sequential(*mods)


def diagonal_guide(query_mask: torch.Tensor, key_mask: torch.Tensor, sigma: float = 0.2) -> torch.Tensor:
    """(B, T) and (B, M) bool masks -> (B, T, M) penalty W = 1 - exp(-(n/N - m/M)^2 / (2 sigma^2)).

    n, m are positions among each row's real tokens and N, M the row's real lengths, so W is 0 on the
    diagonal of the real part and near 1 far from it; 0 at padded queries (padded keys get no attention).
    """
    def relative(mask: torch.Tensor) -> torch.Tensor:  # (B, L) -> (B, L) position / length in [0, 1)
        m = mask.float()
        return (m.cumsum(-1) - 1).clamp_min(0) / m.sum(-1, keepdim=True).clamp_min(1)

    d = relative(query_mask)[:, :, None] - relative(key_mask)[:, None, :]  # (B, T, M)
    return (1 - torch.exp(-d.square() / (2 * sigma**2))) * query_mask[:, :, None].float()


def guide_penalty(weights: torch.Tensor, guide: torch.Tensor) -> torch.Tensor:
    """Attention weights (B, H, T, M) and a guide (B, T, M) -> the mean penalised mass per head and
    per query with a guide (a query row of zeros, e.g. padding, is left out)."""
    g = guide.to(weights.dtype)
    return (weights * g[:, None]).sum() / (weights.shape[1] * (g.sum(-1) > 0).sum().clamp_min(1))


class InputProjection(nn.Module):
    """Non-linear projection after a tower's embeddings: e + tanh(g) * ReLU(MLP(e)).

    The paper uses h0 = ReLU(MLP(e)); we add it as a zero-gated residual instead, so that at
    initialisation it is exactly the identity and the frozen tower sees its own embeddings.
    """

    def __init__(self, dim: int, layers: int = 2):
        super().__init__()
        self.mlp = relu_mlp(dim, dim, layers)
        self.gate = nn.Parameter(torch.zeros(1))  # zero: identity at init (see class docstring)

    def forward(self, embeds: torch.Tensor) -> torch.Tensor:  # (B, T, D) -> (B, T, D)
        h = self.mlp(embeds.to(self.gate.dtype))
        return embeds + (torch.tanh(self.gate) * h).to(embeds.dtype)


class GatedCrossAttention(nn.Module):
    """One zip block: the attending tower (width ``dim``) reads the other tower (width ``mem_dim``)."""

    def __init__(self, dim: int, mem_dim: int, heads: int, projection_layers: int = 3, ffn_mult: int = 4,
                 dropout: float = 0.0):
        super().__init__()
        if dim % heads:
            raise ValueError(f"width {dim} is not divisible by {heads} heads")
        self.heads, self.dropout = heads, dropout
        self.mem_norm = nn.LayerNorm(mem_dim)
        self.mem_proj = relu_mlp(mem_dim, dim, projection_layers)
        self.attn_norm = nn.LayerNorm(dim)
        self.q = nn.Linear(dim, dim, bias=False)
        self.kv = nn.Linear(dim, 2 * dim, bias=False)
        self.out = nn.Linear(dim, dim, bias=False)
        # ffn_mult=0: no gated feed-forward, so the block can change the stream only by what it reads
        self.ff_norm = nn.LayerNorm(dim) if ffn_mult else None
        self.ff = nn.Sequential(nn.Linear(dim, ffn_mult * dim), nn.GELU(), nn.Linear(ffn_mult * dim, dim)) if ffn_mult else None
        # tanh gates start at zero: the block is the identity at init, the towers are undisturbed.
        self.attn_gate = nn.Parameter(torch.zeros(1))
        self.ff_gate = nn.Parameter(torch.zeros(1)) if ffn_mult else None

    def memory(self, states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The other tower's states (B, M, D_mem) -> keys and values (B, H, M, D/H), computed once."""
        m = self.mem_proj(self.mem_norm(states.to(self.q.weight.dtype)))  # (B, M, D)
        k, v = self.kv(m).chunk(2, dim=-1)
        return self._split(k), self._split(v)

    def _split(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, D) -> (B, H, T, D/H)
        b, t, d = x.shape
        return x.view(b, t, self.heads, d // self.heads).transpose(1, 2)

    def _queries(self, h: torch.Tensor, key_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Stream (B, T, D) in the block's dtype -> queries (B, H, T, D/H) and the visible keys (B, 1, 1, M)."""
        # SDPA returns NaN for a fully masked row; unmask such rows (forward zeroes their update).
        mask = (key_mask | ~key_mask.any(dim=-1, keepdim=True))[:, None, None, :]
        return self._split(self.q(self.attn_norm(h))), mask

    @staticmethod
    def _weights(q: torch.Tensor, k: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:  # -> (B, H, T, M)
        return (q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5).masked_fill(~mask, float("-inf")).softmax(-1)

    def attention_weights(self, x: torch.Tensor, k: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
        """The softmax weights (B, H, T, M) with which x (B, T, D) reads keys k (B, H, M, D/H)."""
        q, mask = self._queries(x.to(self.q.weight.dtype), key_mask)
        return self._weights(q, k, mask)

    def forward(self, x: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_mask: torch.Tensor,
                guide: torch.Tensor | None = None, penalties: list | None = None) -> torch.Tensor:
        """x (B, T, D) attends to k, v (B, H, M, D/H); key_mask (B, M) bool, True = real position.

        With ``guide`` (B, T, M) (see :func:`diagonal_guide`), the attention weights are formed
        explicitly and their mean guide penalty per real query (heads averaged) is appended to
        ``penalties``. A row with no visible memory (an empty or all-padding segment) is left unchanged.
        """
        dtype = x.dtype
        h = x.to(self.q.weight.dtype)
        has_memory = key_mask.any(dim=-1)  # (B,)
        q, mask = self._queries(h, key_mask)  # (B, H, T, D/H), (B, 1, 1, M)
        if guide is None:
            a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                               dropout_p=self.dropout if self.training else 0.0)
        else:  # the same attention, with its weights in hand
            w = self._weights(q, k, mask)  # (B, H, T, M)
            penalties.append(guide_penalty(w, guide * has_memory[:, None, None]))  # rows without memory: none
            a = F.dropout(w, self.dropout, self.training) @ v  # (B, H, T, D/H)
        a = self.out(a.transpose(1, 2).reshape(h.shape))  # (B, T, D)
        keep = has_memory[:, None, None].to(h.dtype)
        h = h + keep * torch.tanh(self.attn_gate) * a
        if self.ff is not None:
            h = h + keep * torch.tanh(self.ff_gate) * F.dropout(self.ff(self.ff_norm(h)), self.dropout, self.training)
        return h.to(dtype)
