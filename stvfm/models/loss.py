"""Training objective, Eq. 11: L = MSE(ST forecast, ST target) + λ · MSE(flow forecast, flow target).

The flow target is Δ_t X of the target window (continuing from the last input step). The flow term is there only when
the model has a flow branch (``out.flow`` is not None); for every other model ``parts["flow"]`` is None.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from stvfm.models.output import ModelOutput


def stvfm_loss(out: ModelOutput, y: torch.Tensor, y_flow: torch.Tensor | None, lambda_flow: float
               ) -> tuple[torch.Tensor, dict[str, torch.Tensor | None]]:
    """Returns ``(loss, {"st": detached ST MSE, "flow": detached flow MSE or None})``; losses in float32."""
    st = F.mse_loss(out.st.float(), y.float())
    parts: dict[str, torch.Tensor | None] = {"st": st.detach(), "flow": None}
    loss = st
    if out.flow is not None:
        if y_flow is None:
            raise ValueError("the model forecasts the flow branch (variant 'full') but no flow target y_flow was given")
        fl = F.mse_loss(out.flow.float(), y_flow.float())
        parts["flow"] = fl.detach()
        loss = st + float(lambda_flow) * fl
    return loss, parts
