"""ST-VFM assembled (Fig. 1), switchable to every ablation of Table 3 with one field, ``model.variant``:

    variant    Table 3       pre-VFM                                       VFM              post-VFM / decoder
    simple     #1            tokenizer -> linear -> pos-emb                frozen           MLP decoder
    token      #2            tokenizer -> Eq.5 -> Eq.7 -> pos-emb          frozen           temporal Transformer decoder
    temporal   #3            + temporal context encoder (Eq. 6)            frozen           temporal Transformer decoder
    adapter    #4            as #3                                         + Houlsby        temporal Transformer decoder
    full       Ours (full)   as #3, for the ST and the ST-flow branch      + Houlsby        cross-prompt (Eqs. 9-10) +
                                                                                    one decoder per branch, Eq. 11

Data path (B batch, T steps, N_s patches): x (B,T,C,H,W) -> tokens (B·T, N_s, D_VFM) per branch. Both branches are
concatenated along the batch axis and the frozen VFM runs ONCE on (2·B·T, N_s, D_VFM); its output is split again,
projected D_VFM -> D_T, coordinated by cross-prompts, decoded to (B, T_out, N_s, Ps²·C) and un-patchified.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import nn

from stvfm.config import ModelConfig
from stvfm.errors import DataError
from stvfm.models.adapter import add_adapters
from stvfm.models.backbone import FrozenVFM
from stvfm.models.cross_prompt import BilateralCrossPrompt
from stvfm.models.decoder import MLPDecoder, TemporalDecoder
from stvfm.models.output import ModelOutput
from stvfm.models.output_path import OutputPath
from stvfm.models.time_embed import TimeIdentity, check_time_ids
from stvfm.models.token_adapter import TemporalAwareTokenAdapter
from stvfm.models.tokenizer import PatchTokenizer


@dataclass(frozen=True)
class VariantSpec:
    simple_adaptation: bool  # #1: one linear map instead of Eq. 5 + Eq. 7
    temporal_encoder: bool  # Eq. 6
    adapters: bool  # Houlsby adapters in the VFM
    flow_branch: bool  # second input branch + auxiliary flow forecast
    cross_prompt: bool  # Eqs. 9-10
    mlp_decoder: bool  # #1's MLP instead of the temporal Transformer decoder


VARIANT_SPECS: dict[str, VariantSpec] = {
    "simple": VariantSpec(True, False, False, False, False, True),
    "token": VariantSpec(False, False, False, False, False, False),
    "temporal": VariantSpec(False, True, False, False, False, False),
    "adapter": VariantSpec(False, True, True, False, False, False),
    "full": VariantSpec(False, True, True, True, True, False),
}


class BranchHead(nn.Module):
    """Post-VFM part of one branch up to the decoder: D_VFM -> D_T projection."""

    def __init__(self, d_vfm: int, d_temporal: int):
        super().__init__()
        self.proj = nn.Linear(d_vfm, d_temporal)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.proj(h)


class STVFM(nn.Module):
    def __init__(
        self,
        cfg: ModelConfig,
        vfm: FrozenVFM,
        grid: tuple[int, int],
        channels: int,
        history: int = 6,
        horizon: int = 6,
        interval_minutes: int | None = None,
    ):
        super().__init__()
        self.variant = cfg.variant
        self.spec = spec = VARIANT_SPECS[cfg.variant]
        self.grid, self.channels, self.history, self.horizon = (
            (int(grid[0]), int(grid[1])),
            int(channels),
            int(history),
            int(horizon),
        )
        if not isinstance(cfg.bf16, bool):
            raise ValueError(
                f"model.bf16={cfg.bf16!r}: resolve it to true/false before building the model "
                "(stvfm.training.precision.resolve_bf16)"
            )
        self.bf16 = cfg.bf16
        self.tokenizer = PatchTokenizer(self.grid, self.channels, cfg.patch_size)
        d_vfm, d_t = vfm.embed_dim, cfg.d_temporal
        temporal_layers = cfg.temporal_layers if spec.temporal_encoder else 0
        prompt_layers = 2 if cfg.prompt_layers is None else int(cfg.prompt_layers)

        def token_adapter() -> TemporalAwareTokenAdapter:
            return TemporalAwareTokenAdapter(
                self.tokenizer,
                d_t,
                d_vfm,
                temporal_layers,
                cfg.heads,
                self.history,
                cfg.dropout,
                simple=spec.simple_adaptation,
            )

        def decoder() -> nn.Module:
            return TemporalDecoder(
                d_t, cfg.decoder_layers, cfg.heads, self.history, self.horizon, self.tokenizer.patch_dim, cfg.dropout
            )

        self.st_in = token_adapter()
        self.flow_in = token_adapter() if spec.flow_branch else None
        if spec.adapters:
            add_adapters(vfm, cfg.adapter_dim)
        self.vfm = vfm
        if spec.mlp_decoder:
            self.st_head = None
            self.st_dec = MLPDecoder(d_vfm, d_t, self.history, self.horizon, self.tokenizer.patch_dim, cfg.dropout)
        else:
            self.st_head = BranchHead(d_vfm, d_t)
            self.st_dec = decoder()
        self.flow_head = BranchHead(d_vfm, d_t) if spec.flow_branch else None
        self.flow_dec = decoder() if spec.flow_branch else None
        self.cross = (
            BilateralCrossPrompt(d_t, prompt_layers, cfg.heads, cfg.prompt_tokens, cfg.dropout)
            if spec.cross_prompt and prompt_layers > 0
            else None
        )
        # beyond the paper: the clock (model.time_identity) and the output path (model.output)
        if cfg.time_identity and interval_minutes is None:
            raise ValueError("model.time_identity needs the data interval (interval_minutes)")
        self.time_in = TimeIdentity(interval_minutes, d_vfm) if cfg.time_identity else None
        self.time_dec = TimeIdentity(interval_minutes, d_t) if cfg.time_identity and not spec.mlp_decoder else None
        identity = None
        if cfg.output == "identity":
            from stvfm.models.stid import build_stid

            identity = build_stid(cfg, self.grid, self.channels, self.history, self.horizon, interval_minutes)
        self.output_path = OutputPath(
            cfg.output, self.grid, self.channels, self.history, self.horizon, interval_minutes, identity
        )
        self.needs_time_ids = self.time_in is not None or self.output_path.needs_time_ids
        if cfg.output in ("anchored", "identity"):  # start exactly at the anchor: the ST head's correction starts at 0
            head = self.st_dec.mlp[-1] if spec.mlp_decoder else self.st_dec.head
            nn.init.zeros_(head.weight)
            nn.init.zeros_(head.bias)
        # True: one VFM call on both branches stacked along the batch. False: one call per branch (the reference
        # the speed benchmark compares against); results are identical either way.
        self.fuse_branches = True

    # ------------------------------------------------------------------------------------------------------------
    def train(self, mode: bool = True) -> STVFM:
        super().train(mode)  # FrozenVFM.train keeps the frozen VFM in eval mode (adapters follow `mode`)
        return self

    def _check(self, x: torch.Tensor, name: str) -> None:
        want = (self.history, self.channels, *self.grid)
        if x.dim() != 5 or tuple(x.shape[1:]) != want:
            raise DataError(
                f"model input '{name}' has shape {tuple(x.shape)}; this model was built for "
                f"(B, T={want[0]}, C={want[1]}, H={want[2]}, W={want[3]}). Rebuild the model for the "
                f"dataset's grid/channels/history"
            )

    def _autocast(self, device: torch.device):
        if not self.bf16:
            return contextlib.nullcontext()
        return torch.autocast(device.type, dtype=torch.bfloat16)

    def forward(
        self, x: torch.Tensor, x_flow: torch.Tensor | None = None, time_ids: torch.Tensor | None = None
    ) -> ModelOutput:
        """``time_ids``: int64 (B, history + horizon, 2) [slot of day, day of week] (stvfm.data.timefeatures)."""
        self._check(x, "x")
        if self.spec.flow_branch:
            if x_flow is None:
                raise DataError("variant 'full' needs the ST-flow input x_flow (B, T, C, H, W); got None")
            self._check(x_flow, "x_flow")
        b, t = x.shape[:2]
        if self.needs_time_ids:
            check_time_ids(time_ids, b, self.history + self.horizon, f"this ST-VFM (variant '{self.variant}')")
        with self._autocast(x.device):
            clock_in = clock_dec = None
            if self.time_in is not None:  # (B·T, 1, D_VFM): the same clock for every patch of a step
                clock_in = self.time_in(time_ids[:, :t]).reshape(b * t, 1, -1)
            if self.time_dec is not None:
                clock_dec = self.time_dec(time_ids)
            z = self.st_in(x)  # (B·T, N_s, D_VFM)
            zf = self.flow_in(x_flow) if self.flow_in is not None else None
            if clock_in is not None:
                z = z + clock_in
                zf = zf + clock_in if zf is not None else None
            if zf is None:
                h = self.vfm(z)
            elif self.fuse_branches:
                h = self.vfm(torch.cat([z, zf], dim=0))  # one VFM call for both branches
            else:
                h = torch.cat([self.vfm(z), self.vfm(zf)], dim=0)
            n, d = h.shape[1:]
            h = h.reshape(-1, b, t, n, d)
            flow = None
            if self.spec.mlp_decoder:
                st = self.tokenizer.unpatchify(self.st_dec(h[0])).float()
            else:
                # the post-VFM residual streams in fp32, as the VFM's (the fp32 positional embedding) and the
                # decoders' (their fp32 time embedding) already are: a head's Linear returns bf16 under autocast, and
                # the cross-prompt blocks' residual adds in bf16 lost 40-88 % of their LayerNorm gradients (sums that
                # nearly cancel) against fp32; in fp32, ~1 % (tests/models/test_speed_equivalence.py, docs/model.md)
                h_st = self.st_head(h[0]).float()
                if self.flow_head is not None:
                    h_flow = self.flow_head(h[1]).float()
                    if self.cross is not None:
                        h_st, h_flow = self.cross(h_st, h_flow)
                    flow = self.tokenizer.unpatchify(self.flow_dec(h_flow, clock_dec)).float()
                st = self.tokenizer.unpatchify(self.st_dec(h_st, clock_dec)).float()
        st = self.output_path(st, x.float(), time_ids)
        return ModelOutput(st, flow)


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, total
