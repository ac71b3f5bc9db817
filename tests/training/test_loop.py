import math
import re

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, DistributedSampler

from stvfm.config import TrainConfig
from stvfm.data.scaler import Scaler
from stvfm.errors import CheckpointError
from stvfm.metrics import ErrorAccumulator, mae_np, mae_torch, rmse_np, rmse_torch
from stvfm.training.checkpoint import best_from_state, load_checkpoint, save_checkpoint
from stvfm.training.components import make_inverse
from stvfm.training.loop import LoopTrainer, warmup_cosine
from stvfm.training.seed import seed_everything

from .standins import SineWindows, TinyModel, tiny_loss

SCALER = Scaler("standard", np.array([10.0, 20.0]), np.array([2.0, 4.0]), 0.0)


def make_trainer(cfg: TrainConfig, seed=None):
    seed_everything(cfg.seed if seed is None else seed)
    model = TinyModel()
    tr_ds, va_ds = SineWindows(40, seed=1), SineWindows(12, seed=1, offset=52)
    tl = DataLoader(
        tr_ds,
        batch_size=cfg.batch_size,
        sampler=DistributedSampler(tr_ds, num_replicas=1, rank=0, shuffle=True, seed=cfg.seed),
    )
    vl = DataLoader(va_ds, batch_size=8)
    return LoopTrainer(
        model,
        tl,
        vl,
        cfg,
        loss_fn=tiny_loss,
        inverse=make_inverse(SCALER),
        meta={"dataset": "toy", "arch": "tiny", "grid": [4, 3], "channels": 2},
    )


def test_metrics_numpy_and_torch_agree():
    rng = np.random.default_rng(0)
    y, yh = rng.normal(size=(5, 6, 2, 4, 3)).astype(np.float32), rng.normal(size=(5, 6, 2, 4, 3)).astype(np.float32)
    assert mae_np(y, yh) == pytest.approx(mae_torch(torch.from_numpy(y), torch.from_numpy(yh)), rel=1e-12)
    assert rmse_np(y, yh) == pytest.approx(rmse_torch(torch.from_numpy(y), torch.from_numpy(yh)), rel=1e-12)
    assert mae_np([1.0, 2.0], [2.0, 4.0]) == 1.5 and rmse_np([0.0, 0.0], [3.0, 4.0]) == pytest.approx(math.sqrt(12.5))
    acc = ErrorAccumulator(6)
    for i in range(0, 5, 2):  # batches of 2, 2, 1
        acc.update(torch.from_numpy(y[i : i + 2]), torch.from_numpy(yh[i : i + 2]))
    assert acc.mae == pytest.approx(mae_np(y, yh), rel=1e-12) and acc.rmse == pytest.approx(rmse_np(y, yh), rel=1e-12)
    ps = acc.per_step()
    assert [p["step"] for p in ps] == [1, 2, 3, 4, 5, 6]
    assert ps[3]["mae"] == pytest.approx(mae_np(y[:, 3], yh[:, 3]), rel=1e-12)
    assert ps[5]["rmse"] == pytest.approx(rmse_np(y[:, 5], yh[:, 5]), rel=1e-12)


def test_warmup_cosine_schedule():
    f = warmup_cosine(total_steps=10, warmup_steps=2)
    assert [round(f(s), 3) for s in (0, 1, 2)] == [0.5, 1.0, 1.0]
    assert f(6) == pytest.approx(0.5) and f(10) == pytest.approx(0.0)
    assert warmup_cosine(10, 0, "constant")(7) == 1.0
    assert warmup_cosine(10, 0, "none")(7) == 1.0


def test_multistep_matches_torch_multisteplr_per_epoch():
    """train.scheduler=multistep: the LR of every step of epoch e is MultiStepLR's after e per-epoch steps."""
    cfg = TrainConfig(
        epochs=7,
        batch_size=8,
        lr=2e-3,
        seed=0,
        patience=0,
        scheduler="multistep",
        milestones=[1, 3, 5],
        gamma=0.5,
        optimizer="adam",
        weight_decay=1e-4,
    )
    tr = make_trainer(cfg)
    assert isinstance(tr.optimizer, torch.optim.Adam) and not isinstance(tr.optimizer, torch.optim.AdamW)
    assert tr.optimizer.param_groups[0]["weight_decay"] == 1e-4
    ref_opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=2e-3)
    ref = torch.optim.lr_scheduler.MultiStepLR(ref_opt, milestones=[1, 3, 5], gamma=0.5)
    want = []
    for _ in range(cfg.epochs):
        want.append(ref_opt.param_groups[0]["lr"])
        ref_opt.step()
        ref.step()
    assert want == pytest.approx([2e-3, 1e-3, 1e-3, 5e-4, 5e-4, 2.5e-4, 2.5e-4])
    got = []
    tr.optimizer.register_step_pre_hook(lambda opt, args, kwargs: got.append(opt.param_groups[0]["lr"]))
    tr.fit()
    spe = tr.steps_per_epoch
    assert spe == 5 and len(got) == cfg.epochs * spe
    assert got == pytest.approx([w for w in want for _ in range(spe)])
    # warm-up ramps the first epoch's steps, then the multistep factors apply
    f = warmup_cosine(70, 10, "multistep", steps_per_epoch=10, milestones=[2], gamma=0.1)
    assert [f(s) for s in (0, 4, 9, 10, 19, 20)] == pytest.approx([0.1, 0.5, 1.0, 1.0, 1.0, 0.1])


def test_optimizer_choice_and_recipe_keys_validated():
    from stvfm.config import load_params
    from stvfm.errors import ConfigError

    assert isinstance(make_trainer(TrainConfig(epochs=1, batch_size=8)).optimizer, torch.optim.AdamW)
    p = load_params(
        overrides=[
            "train.scheduler=multistep",
            "train.milestones=[1, 50, 80]",
            "train.loss=mae",
            "train.optimizer=adam",
            "data.scaler=per_cell",
        ]
    )
    assert (p.train.milestones, p.train.loss, p.train.optimizer, p.data.scaler) == (
        [1, 50, 80],
        "mae",
        "adam",
        "per_cell",
    )
    for bad, msg in (
        ("train.loss=huber", "train.loss: 'huber'"),
        ("train.optimizer=sgd", "train.optimizer: 'sgd'"),
        ("train.scheduler=step", "train.scheduler: 'step'"),
        ("data.scaler=robust", "data.scaler"),
        ("train.milestones=[5, 2]", "train.milestones"),
        ("train.gamma=0", "train.gamma"),
        ("train.scheduler=multistep", "needs at least one milestone"),
    ):
        with pytest.raises(ConfigError, match=msg.replace("[", r"\[")):
            load_params(overrides=[bad])


def test_loop_learns_and_reports_original_scale():
    cfg = TrainConfig(epochs=6, batch_size=8, lr=1e-2, seed=0, patience=0)
    tr = make_trainer(cfg)
    _, acc0 = tr.validate()
    seen = []
    st = tr.fit(lambda r, t: seen.append(r))
    assert [r.epoch for r in seen] == list(range(6)) and len(st.history) == 6
    assert seen[-1].train_loss < seen[0].train_loss
    assert st.best_val < acc0.mae
    assert seen[0].samples == 40
    # validation MAE is on the original scale: equals scaled MAE x channel scale, computed by hand
    tr.model.eval()
    with torch.no_grad():
        b = next(iter(DataLoader(tr.val_loader.dataset, batch_size=12)))
        out = tr.model(b["x"], b["x_flow"]).st
    inv = make_inverse(SCALER)
    hand = (inv(out) - inv(b["y"])).abs().mean()
    _, acc = tr.validate(DataLoader(tr.val_loader.dataset, batch_size=12))
    assert acc.mae == pytest.approx(float(hand), rel=1e-5)


def test_same_seed_same_result_and_resume_equivalence(tmp_path):
    cfg = TrainConfig(epochs=4, batch_size=8, lr=5e-3, seed=3, patience=0)
    a = make_trainer(cfg)
    ha = a.fit().history
    b = make_trainer(cfg)
    hb = b.fit().history
    timing = ("epoch_seconds", "started_at")

    def strip(h):
        return [{k: v for k, v in r.items() if k not in timing} for r in h]

    assert strip(ha) == strip(hb)
    # 2 epochs, checkpoint, a fresh trainer resumes for 2 more -> identical to 4 straight
    c = make_trainer(TrainConfig(**cfg.__dict__))
    c.cfg.epochs = 4
    stop_after = []

    def cut(res, tr):
        if res.epoch == 1:
            save_checkpoint(tmp_path / "last.pt", tr.state_dict())
            stop_after.append(1)
            tr.state.stopped_early = True  # stop here, as if the process died

    c.fit(cut)
    d = make_trainer(cfg, seed=99)  # different init: everything must come from the checkpoint
    st = load_checkpoint(tmp_path / "last.pt", require=("model_state", "optimizer", "loop"))
    st["loop"]["stopped_early"] = False
    d.load_state_dict(st)
    assert d.state.next_epoch == 2
    hd = d.fit().history
    assert strip(hd) == strip(ha)
    for k, v in a.model.state_dict().items():
        assert torch.equal(v, d.model.state_dict()[k]), k


def test_early_stopping_and_max_batches():
    cfg = TrainConfig(epochs=30, batch_size=8, lr=0.0, seed=0, patience=2, max_batches_per_epoch=2)
    tr = make_trainer(cfg)  # lr 0: no improvement after epoch 0 -> stops after epoch 2
    seen = []
    st = tr.fit(lambda r, t: seen.append(r))
    assert [r.epoch for r in seen] == [0, 1, 2] and st.stopped_early and seen[-1].stop
    assert st.best_epoch == 1 and all(r.samples == 16 for r in seen)  # epoch numbers are 1-based
    assert [h["epoch"] for h in st.history] == [1, 2, 3] == [r.number for r in seen]


def test_checkpoint_weights_only_roundtrip_and_best(tmp_path):
    cfg = TrainConfig(epochs=3, batch_size=8, lr=1e-2, seed=0, patience=0)
    tr = make_trainer(cfg)
    tr.fit()
    p = save_checkpoint(tmp_path / "last.pt", tr.state_dict())
    raw = torch.load(p, weights_only=True)  # plain types only: loads with weights_only=True
    assert raw["loop"]["next_epoch"] == 3 and raw["dataset"] == "toy"
    best = best_from_state(raw)
    assert best["epoch"] == tr.state.best_epoch and best["val"]["val_mae"] == tr.state.best_val
    m = TinyModel()
    m.load_state_dict(best["model_state"])
    assert not list(tmp_path.glob(".*tmp"))  # atomic write left nothing behind


@pytest.mark.parametrize("damage", ["truncate", "garbage", "missing", "wrong_type"])
def test_corrupt_checkpoint_clear_error(tmp_path, damage):
    cfg = TrainConfig(epochs=1, batch_size=8, seed=0)
    tr = make_trainer(cfg)
    p = save_checkpoint(tmp_path / "best.pt", tr.state_dict())
    if damage == "truncate":
        data = p.read_bytes()
        p.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        p.write_bytes(b"not a checkpoint at all" * 10)
    elif damage == "missing":
        p.unlink()
    else:
        torch.save([1, 2, 3], p)
    with pytest.raises(CheckpointError, match=re.escape("best.pt")):
        load_checkpoint(p)


def test_resume_with_wrong_model_is_clear(tmp_path):
    tr = make_trainer(TrainConfig(epochs=1, batch_size=8))
    st = tr.state_dict()
    st["model_state"] = {"nope": torch.zeros(1)}
    with pytest.raises(CheckpointError, match="cannot resume"):
        make_trainer(TrainConfig(epochs=1, batch_size=8)).load_state_dict(st, "x.pt")
