"""Bilateral cross-prompt coordination (§3.4, Eqs. 9-10), after the frozen VFM.

Per branch, ``prompt_layers`` blocks of prompt attention. In block l the ST branch's tokens attend over their own keys
*and* L_p prompt keys/values taken from the Flow branch (Eq. 10), and vice versa; both branches are updated from the
other's block-(l-1) state, so the coordination is symmetric.

Prompt extraction (Eq. 9): a branch's output of one window is its N_s·T tokens (all frames). L_p learned queries
attend over them (attention pooling, one SDPA call) to give L_p prompt vectors per window, so every prompt can carry
information from any location and any step. A linear layer then maps them to the key/value space of the attending
block (``prompt_kv``). Inside the block, attention runs per frame over its N_s tokens (batch B·T) and the window's
prompts are shared by all T frames of that window. With L_p = 0 the block is plain multi-head self-attention + FFN
(tested numerically).

All blocks work at the post-VFM width D_T (VFM features are projected D_VFM -> D_T first), which keeps the extra
cost of the dual branch small.
"""

from __future__ import annotations

import torch
from torch import nn

from stvfm.models.layers import SelfAttention, TransformerBlock, attention, merge_heads, split_heads, split_parts


class PromptExtractor(nn.Module):
    """(B, M, D) tokens of one branch -> (B, L_p, D) prompts by attention pooling with L_p learned queries."""

    def __init__(self, dim: int, num_prompts: int, heads: int):
        super().__init__()
        self.num_prompts, self.heads = num_prompts, heads
        self.queries = nn.Parameter(torch.zeros(num_prompts, dim))
        nn.init.trunc_normal_(self.queries, std=0.02)
        self.norm = nn.LayerNorm(dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        b, _, d = h.shape
        if self.num_prompts == 0:
            return h.new_zeros(b, 0, d)
        k, v = split_parts(self.kv(self.norm(h)), 2, self.heads)
        q = self.queries.to(k.dtype).unsqueeze(0).expand(b, -1, -1)
        o = attention(split_heads(q, self.heads), k, v)
        return self.out(merge_heads(o))


class CrossPromptAttention(SelfAttention):
    """Multi-head attention whose keys/values are the tokens' own plus L_p prompt keys/values (Eq. 10):
    ``forward(x (B', N, D), prompts (B', L_p, D) | None)``; ``prompt_kv`` maps prompts to the K/V space."""

    def __init__(self, dim: int, heads: int):
        super().__init__(dim, heads, extra_kv=True)


class CrossPromptBlock(TransformerBlock):
    """Pre-norm Transformer block with :class:`CrossPromptAttention` and a GELU FFN."""

    def __init__(self, dim: int, heads: int, dropout: float = 0.0):
        super().__init__(dim, heads, dropout, extra_kv=True)


class BilateralCrossPrompt(nn.Module):
    """``layers`` rounds of ST <-> Flow prompt attention on (B, T, N_s, D) features of both branches."""

    def __init__(self, dim: int, layers: int, heads: int, num_prompts: int, dropout: float = 0.0):
        super().__init__()
        self.layers, self.num_prompts = layers, num_prompts
        # with L_p = 0 the blocks are plain self-attention blocks and no prompt parameters exist (none left unused)
        block = CrossPromptBlock if num_prompts > 0 else TransformerBlock
        self.st_blocks = nn.ModuleList(block(dim, heads, dropout) for _ in range(layers))
        self.flow_blocks = nn.ModuleList(block(dim, heads, dropout) for _ in range(layers))
        # prompts *from* a branch (P^ST feeds the Flow blocks, P^Flow feeds the ST blocks), Eq. 9
        n_ext = layers if num_prompts > 0 else 0
        self.st_prompts = nn.ModuleList(PromptExtractor(dim, num_prompts, heads) for _ in range(n_ext))
        self.flow_prompts = nn.ModuleList(PromptExtractor(dim, num_prompts, heads) for _ in range(n_ext))

    @staticmethod
    def _per_frame(p: torch.Tensor, t: int) -> torch.Tensor:
        b, lp, d = p.shape
        return p.unsqueeze(1).expand(b, t, lp, d).reshape(b * t, lp, d)

    def forward(self, h_st: torch.Tensor, h_flow: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, t, n, d = h_st.shape
        for i in range(self.layers):
            p_st = p_flow = None
            if self.num_prompts > 0:
                p_st = self._per_frame(self.st_prompts[i](h_st.reshape(b, t * n, d)), t)  # P^ST from N_s·T tokens
                p_flow = self._per_frame(self.flow_prompts[i](h_flow.reshape(b, t * n, d)), t)  # P^Flow
            new_st = self.st_blocks[i](h_st.reshape(b * t, n, d), p_flow)
            new_flow = self.flow_blocks[i](h_flow.reshape(b * t, n, d), p_st)
            h_st, h_flow = new_st.reshape(b, t, n, d), new_flow.reshape(b, t, n, d)
        return h_st, h_flow
