"""The BASE stack end to end: trainer + callbacks + loggers + datamodule from the composed config fit a model."""

from __future__ import annotations

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf


class TinyClassifier:
    """Built lazily so importing this file stays cheap."""

    @staticmethod
    def build(in_features: int, num_classes: int):
        import pytorch_lightning as pl

        class Module(pl.LightningModule):
            def __init__(self):
                super().__init__()
                self.net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(in_features, num_classes))

            def training_step(self, batch, _):
                x, y = batch
                loss = torch.nn.functional.cross_entropy(self.net(x), y)
                self.log("train/loss", loss)
                return loss

            def validation_step(self, batch, _):
                x, y = batch
                self.log("val/acc", (self.net(x).argmax(1) == y).float().mean())

            def configure_optimizers(self):
                optimizer = torch.optim.SGD(self.parameters(), lr=0.1)
                return {"optimizer": optimizer, "lr_scheduler": torch.optim.lr_scheduler.StepLR(optimizer, 1)}

        return Module()


def _fit(cfg):
    from s3nas.data import build_datamodule
    from s3nas.runtime.callbacks import build_callbacks
    from s3nas.runtime.loggers import build_loggers

    datamodule = build_datamodule(cfg.data)
    loggers = build_loggers(cfg)
    callbacks = build_callbacks(cfg, loggers)
    trainer = instantiate(OmegaConf.to_container(cfg.trainer, resolve=True), logger=loggers or False,
                          callbacks=callbacks, enable_model_summary=False, _convert_="all")
    model = TinyClassifier.build(datamodule.in_channels * datamodule.image_size ** 2, datamodule.num_classes)
    trainer.fit(model, datamodule=datamodule)
    return trainer


def test_default_trainer_fits_digits_with_csv_and_checkpoints(compose_cfg, tmp_path):
    cfg = compose_cfg(["debug=fast", "logger=csv", "data.image_size=8", "trainer.max_epochs=2"])
    trainer = _fit(cfg)
    assert trainer.current_epoch == 2 and trainer.global_step == 4  # 2 epochs x limit_train_batches=2
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()
    metrics = (tmp_path / "csv" / "version_0" / "metrics.csv").read_text()
    assert "val/acc" in metrics and "lr-SGD" in metrics  # LR monitor logs through the CSV logger


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gpu_trainer_fits_digits(compose_cfg):
    cfg = compose_cfg(["trainer=gpu", "debug=fast", "logger=none", "data.image_size=8"])
    trainer = _fit(cfg)
    assert trainer.global_step == 2 and trainer.precision == "16-mixed"
