"""Opt-in compiled train step (``train.compile: true``): ``torch.compile`` of the model for the loop's train step, with
Inductor's persistent caches, so a later run of the same model and shapes loads the compiled kernels instead of
compiling again.

- The caches (FX graph cache, AOTAutograd cache) live in ``$STVFM_COMPILE_CACHE``, by default
  ``~/.cache/stvfm/torch-compile`` (torch's own default is a temporary directory, emptied on reboot). torch's own
  variable, ``TORCHINDUCTOR_CACHE_DIR``, cannot say it: importing timm already sets it to that temporary default.
- Shapes are fixed per epoch: the loop runs the compiled model on full batches only; the one short last batch of an
  epoch takes the same eager model (the same parameters), so it never triggers a recompile, and every window is still
  trained on (no ``drop_last``). Validation runs eagerly.

Measured on the `real` profile (bikenyc2_test, batch 16, one CPU thread, docs/training.md): the step 1.3x faster in
steady state; compiling costs minutes the first time and seconds from the cache.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn


def compile_cache_dir() -> Path:
    """``$STVFM_COMPILE_CACHE`` or ``~/.cache/stvfm/torch-compile``."""
    env = os.environ.get("STVFM_COMPILE_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "stvfm" / "torch-compile"


def compile_model(model: nn.Module) -> nn.Module:
    """``torch.compile(model)`` with static shapes and the persistent caches on (same parameters, same module).
    Inductor reads ``TORCHINDUCTOR_CACHE_DIR`` whenever it opens a cache, so setting it here moves every cache."""
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(compile_cache_dir())
    import torch._functorch.config as functorch_config
    import torch._inductor.config as inductor_config

    inductor_config.fx_graph_cache = True
    functorch_config.enable_autograd_cache = True
    return torch.compile(model, dynamic=False)
