"""Small Transformer building blocks shared by the temporal encoder, the decoder and the cross-prompt blocks.

A lean pre-norm block on (batch, L, D) that calls ``F.scaled_dot_product_attention`` directly. It computes the same
function as ``nn.TransformerEncoderLayer(norm_first=True, activation="gelu")`` but avoids the sequence-first
transposes and copies of ``nn.MultiheadAttention``, which dominate for the many short sequences here (B·N_s
sequences of T = 6..12 steps).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

SMALL_SCORES = 256 * 256  # up to this many scores per head (queries × keys), attention runs as plain matmuls (here
# and in timm's VFM blocks, backbone.py)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """softmax(q kᵀ / √d) v on (batch, heads, L, d). For the many small score matrices here (T = 6..12 steps, tens of
    patches, L_p = 8 prompt queries over the N_s·T tokens of a window), torch's fused CPU kernel (flash attention) is
    measured 3-5x slower than three plain ops, its backward most of all (bf16 autocast, forward + backward, 1 thread:
    12×12 2.7x, 50×58 7x, 8 prompt queries × 300 keys 3.3x, × 6144 keys 3.4x; 256×256 level, 1024×1024 0.7x);
    larger score matrices keep the fused kernel (it never materialises them), as does CUDA. Same function either way."""
    if q.is_cuda or q.shape[-2] * k.shape[-2] > SMALL_SCORES:
        return F.scaled_dot_product_attention(q, k, v)
    w = torch.softmax((q * q.shape[-1] ** -0.5) @ k.transpose(-2, -1), dim=-1)
    return w @ v


def split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    b, n, d = x.shape
    return x.view(b, n, heads, d // heads).transpose(1, 2)


def split_parts(x: torch.Tensor, parts: int, heads: int) -> tuple[torch.Tensor, ...]:
    """(b, n, parts·d) fused projections (q|k|v, k|v) -> ``parts`` contiguous (b, heads, n, d/heads) tensors, with one
    layout copy for all of them. Indexing the strided view part by part instead costs a copy per part inside each
    matmul and, in backward, a zero-filled gradient of the whole projection per part: the same values, 1.05-1.4x slower
    attention forward + backward for the shapes here (docs/training.md "Speed")."""
    b, n, pd = x.shape
    d = pd // parts
    return x.view(b, n, parts, heads, d // heads).permute(2, 0, 3, 1, 4).contiguous().unbind(0)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    b, h, n, dh = x.shape
    return x.transpose(1, 2).reshape(b, n, h * dh)


class SelfAttention(nn.Module):
    """Multi-head attention over the tokens' own keys/values, plus optional extra (prompt) keys/values."""

    def __init__(self, dim: int, heads: int, extra_kv: bool = False):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} not divisible by heads {heads}")
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.prompt_kv = nn.Linear(dim, 2 * dim) if extra_kv else None  # extra tokens -> K/V space
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, extra: torch.Tensor | None = None, rows_from: int = 0) -> torch.Tensor:
        """``rows_from``: only the queries of rows ``rows_from:`` (keys and values of every row); the output has those
        rows only — exactly the same rows as the full call's ``[:, rows_from:]``."""
        b, _, d = x.shape
        h = self.heads
        q, k, v = split_parts(self.qkv(x), 3, h)
        q = q[:, :, rows_from:] if rows_from else q
        if extra is not None and extra.shape[1] > 0:
            if self.prompt_kv is None:
                raise ValueError("this attention layer takes no extra keys/values")
            kp, vp = self.prompt_kv(extra).view(b, extra.shape[1], 2, h, d // h).permute(2, 0, 3, 1, 4)
            k, v = torch.cat([k, kp], dim=2), torch.cat([v, vp], dim=2)
        return self.proj(merge_heads(attention(q, k, v)))


class TransformerBlock(nn.Module):
    """x = x + attn(LN(x) [, extra]);  x = x + FFN(LN(x))   (pre-norm, GELU FFN of width 4·D)."""

    def __init__(self, dim: int, heads: int, dropout: float = 0.0, extra_kv: bool = False):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = SelfAttention(dim, heads, extra_kv)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(4 * dim, dim))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, extra: torch.Tensor | None = None, rows_from: int = 0) -> torch.Tensor:
        """``rows_from``: compute the output of rows ``rows_from:`` only (every row still serves as key and value):
        the same values as ``forward(x, extra)[:, rows_from:]`` without the work for rows nobody reads (the temporal
        decoder's last layer: only its T_out query rows reach the head)."""
        a = self.drop(self.attn(self.norm1(x), extra, rows_from))
        x = (x[:, rows_from:] if rows_from else x) + a
        return x + self.drop(self.mlp(self.norm2(x)))
