"""Deep training (the paper's schedule) of a small VanillaNet on an ImageFolder.

act_learn rises from 0 (a plain ReLU between the paired convs) to 1 (the identity, so they
can be merged) over the first `decay_epochs`, once per epoch as the authors do; the remaining
epochs run at 1. The checkpoint is written in the official training-form layout, so it goes
through fuse and convert exactly like a released file.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..console import progress_bar
from ..errors import DataError
from ..images import ImageFolder, Preprocessing, load_images
from .checkpoint import save_checkpoint
from .variants import create_model


@dataclass
class TrainConfig:
    variant: str = "vanillanet_5"
    width: float = 1 / 32
    epochs: int = 30
    decay_epochs: int = 15
    batch_size: int = 64
    lr: float = 4e-3
    weight_decay: float = 0.05
    seed: int = 0
    max_shift: int = 2           # random translation in pixels, the only augmentation
    threads: int | None = None


def act_learn_at(epoch: int, decay_epochs: int) -> float:
    """Linear annealing from 0 to 1, reaching 1 at `decay_epochs`."""
    return 1.0 if decay_epochs <= 0 else min(1.0, epoch / decay_epochs)


def _shift(x: torch.Tensor, max_shift: int, gen: torch.Generator) -> torch.Tensor:
    if max_shift <= 0:
        return x
    pad = F.pad(x, [max_shift] * 4, mode="replicate")
    dy, dx = torch.randint(0, 2 * max_shift + 1, (2,), generator=gen).tolist()
    return pad[:, :, dy:dy + x.shape[2], dx:dx + x.shape[3]]


@torch.no_grad()
def evaluate(model, inputs: torch.Tensor, labels: torch.Tensor, batch: int = 256) -> float:
    model.eval()
    correct = sum(int((model(inputs[i:i + batch]).argmax(1) == labels[i:i + batch]).sum())
                  for i in range(0, len(inputs), batch))
    return correct / max(1, len(inputs))


def train(data: str | Path, out: str | Path, cfg: TrainConfig, prep: Preprocessing,
          progress: bool = True) -> dict:
    """Train on data/train, validate on data/val, write the checkpoint to `out`."""
    data = Path(data)
    if cfg.decay_epochs > cfg.epochs:
        raise DataError(f"decay_epochs ({cfg.decay_epochs}) exceeds epochs ({cfg.epochs})",
                        hint="act_learn must reach 1 before training ends, or the net cannot be fused")
    train_set, val_set = ImageFolder(data / "train"), ImageFolder(data / "val")
    if not train_set.labelled or train_set.classes != val_set.classes:
        raise DataError(f"{data} needs train/ and val/ ImageFolders with the same class folders")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)

    tr = load_images(train_set.records, prep, where=data / "train")
    va = load_images(val_set.records, prep, where=data / "val")
    x_tr, y_tr = torch.from_numpy(tr.inputs), torch.from_numpy(tr.labels)
    x_va, y_va = torch.from_numpy(va.inputs), torch.from_numpy(va.labels)

    model = create_model(cfg.variant, cfg.width, num_classes=len(train_set.classes))
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = -(-len(x_tr) // cfg.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.epochs * steps_per_epoch,
                                                pct_start=0.1)
    history = []
    start = time.perf_counter()
    bar = progress_bar(range(cfg.epochs), desc="train", unit="epoch", disable=not progress)
    for epoch in bar:
        model.act_learn = act_learn_at(epoch, cfg.decay_epochs)
        model.train()
        order = torch.randperm(len(x_tr), generator=gen)
        loss_sum = correct = 0
        for i in range(0, len(order), cfg.batch_size):
            idx = order[i:i + cfg.batch_size]
            xb, yb = _shift(x_tr[idx], cfg.max_shift, gen), y_tr[idx]
            logits = model(xb)
            loss = F.cross_entropy(logits, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            loss_sum += float(loss.detach()) * len(idx)
            correct += int((logits.argmax(1) == yb).sum())
        val = evaluate(model, x_va, y_va)
        row = {"epoch": epoch, "act_learn": model.act_learn, "loss": loss_sum / len(x_tr),
               "train_top1": correct / len(x_tr), "val_top1": val}
        history.append(row)
        bar.set_postfix(loss=f"{row['loss']:.3f}", acc=f"{row['train_top1']:.3f}",
                        val=f"{val:.3f}", act_learn=f"{model.act_learn:.2f}")
    model.act_learn = act_learn_at(cfg.epochs, cfg.decay_epochs)
    seconds = time.perf_counter() - start
    meta = {"input_size": prep.crop, "preprocessing": prep.as_dict(), "class_names": train_set.classes,
            "val_top1": history[-1]["val_top1"], "train_seconds": seconds, "trained_on": str(data.resolve())}
    save_checkpoint(model, out, meta=meta, epoch=cfg.epochs - 1,
                    args={**asdict(cfg), "model": cfg.variant})
    return {"checkpoint": str(out), "val_top1": history[-1]["val_top1"], "seconds": seconds,
            "history": history, "act_learn": model.act_learn}


def to_tensor(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
