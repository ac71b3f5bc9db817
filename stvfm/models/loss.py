"""Training objective, Eq. 11: L = E(ST forecast, ST target) + λ · E(flow forecast, flow target).

``E`` is the pointwise error averaged over all points: MSE in the paper (``kind="mse"``, the default) or MAE
(``kind="mae"``, ``train.loss: mae``, the loss of BasicTS's STID recipe); the structure of Eq. 11 is the same for both.
The flow target is Δ_t X of the target window (continuing from the last input step). The flow term is there only when
the model has a flow branch (``out.flow`` is not None); for every other model ``parts["flow"]`` is None.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from stvfm.models.output import ModelOutput

POINTWISE = {"mse": F.mse_loss, "mae": F.l1_loss}


def stvfm_loss(
    out: ModelOutput, y: torch.Tensor, y_flow: torch.Tensor | None, lambda_flow: float, kind: str = "mse"
) -> tuple[torch.Tensor, dict[str, torch.Tensor | None]]:
    """Returns ``(loss, {"st": detached ST error, "flow": detached flow error or None})``; losses in float32."""
    if kind not in POINTWISE:
        raise ValueError(f"loss kind '{kind}' is not one of {', '.join(POINTWISE)}")
    err = POINTWISE[kind]
    st = err(out.st.float(), y.float())
    parts: dict[str, torch.Tensor | None] = {"st": st.detach(), "flow": None}
    loss = st
    if out.flow is not None:
        if y_flow is None:
            raise ValueError("the model forecasts the flow branch (variant 'full') but no flow target y_flow was given")
        fl = err(out.flow.float(), y_flow.float())
        parts["flow"] = fl.detach()
        loss = st + float(lambda_flow) * fl
    return loss, parts
