"""ST-VFM model (Section 3 of the paper): one module per part, assembled in :mod:`stvfm.models.stvfm`, built from a
:class:`stvfm.config.ModelConfig` by :func:`stvfm.models.factory.build_model`.

    tokenizer.py          Flow/ST tokenizer: Ps×Ps patches per step (§3.3 (1))
    temporal_encoder.py   temporal context encoder: Eq. 5 projection + temporal Transformer (Eq. 6)
    token_adapter.py      token adaptation D_T -> D_VFM, T merged into the batch (Eq. 7), + pos-emb
    pos_embed.py          learnable positional embedding N_s × D_VFM (Eq. 8)
    backbone.py           frozen VFM (timm), backbone table, offline weights
    adapter.py            Houlsby adapter between self-attention and residual (§4.3)
    cross_prompt.py       bilateral cross-prompt coordination (Eqs. 9-10)
    decoder.py            per-branch temporal Transformer decoder (and the MLP decoder of ablation #1)
    loss.py               Eq. 11
"""

from stvfm.models.output import ModelOutput

__all__ = ["ModelOutput", "build_model"]


def build_model(*args, **kwargs):
    from stvfm.models.factory import build_model as _build

    return _build(*args, **kwargs)
