"""A tiny Lightning model trained with kubetrain checkpoints; run as a process by
tests/integration/test_framework_adapters.py.

    PL_OUT      directory for losses.jsonl and params.txt (the final parameters' digest)
    PL_STOP_AT  send ourselves SIGTERM during this optimizer step
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from torch.utils.data import TensorDataset
from torchdata.stateful_dataloader import StatefulDataLoader

from kubetrain.integrations.lightning import fit

OUT = Path(os.environ["PL_OUT"])


class Tiny(pl.LightningModule):  # type: ignore[misc]
    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1)
        )

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.net(x), y)
        step = self.trainer.global_step + 1  # the optimizer step this batch makes
        with (OUT / "losses.jsonl").open("a") as f:
            f.write(json.dumps({"step": step, "loss": float(loss.detach())}) + "\n")
        if step == int(os.environ.get("PL_STOP_AT", "0")):
            os.kill(os.getpid(), signal.SIGTERM)  # arrives while this step is in flight
        return loss

    def configure_optimizers(self) -> Any:
        optim = torch.optim.AdamW(self.parameters(), lr=1e-2)
        sched = torch.optim.lr_scheduler.StepLR(optim, step_size=3, gamma=0.5)
        return {"optimizer": optim, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def main() -> None:
    pl.seed_everything(0, verbose=False)
    g = torch.Generator().manual_seed(3)
    x = torch.randn(16, 8, generator=g)
    data = TensorDataset(x, x.sum(dim=1, keepdim=True).tanh())
    # Lightning checkpoints a stateful loader's position: a resume mid-epoch continues with the
    # next batch (a plain DataLoader restarts the interrupted epoch from its first batch).
    loader = StatefulDataLoader(data, batch_size=4, shuffle=False)
    model = Tiny()
    trainer = pl.Trainer(
        max_steps=12,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    fit(trainer, model, loader, every_steps=4)
    digest = hashlib.sha256(
        b"".join(p.detach().numpy().tobytes() for p in model.parameters())
    ).hexdigest()
    (OUT / "params.txt").write_text(digest)


if __name__ == "__main__":
    main()
