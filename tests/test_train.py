"""train.py: outputs of a run, resume (run dir and ckpt_path=) equal to an uninterrupted run, ONNX export
checked with onnxruntime, timm zoo networks, and one-line errors that leave nothing behind.

Runs are tiny (a 3-block ArchSpec, 16x16 digits, 4 batches x 3 epochs) and go through the real command line in
the test process (tests/support/inprocess.py, which puts global torch state, threads and deterministic
algorithms, back afterwards); the one-line error test runs train.py in a real process.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from inprocess import run_inprocess

from s3nas.arch import codec
from s3nas.arch.spec import ArchSpec, BlockSpec, Branch

REPO = Path(__file__).resolve().parents[1]
TINY = ["data.image_size=16", "data.batch_size=32", "trainer.limit_train_batches=4", "recipe.epochs=3",
        "recipe.num_threads=1", "callbacks=none", "trainer.enable_progress_bar=false",
        "trainer.enable_model_summary=false", "seed=3"]
SUMMARY_KEYS = ("test_acc", "val_acc", "params", "macs", "latency_ms", "hardware", "epochs", "train_seconds", "arch")


def tiny_spec() -> ArchSpec:
    """MBConv, MixConv (two kernels, residual) and fused blocks; SE on one."""
    return ArchSpec(blocks=(
        BlockSpec("mbconv", (Branch(3, 2.0),), 16, stride=2, stage=0),
        BlockSpec("mixconv", (Branch(3, 1.0), Branch(5, 1.0)), 16, stride=1, stage=1, se_ratio=0.25),
        BlockSpec("fused", (Branch(3, 2.0),), 24, stride=2, stage=2),
    ), stem_channels=8, stem_kernel=3, head_channels=32, name="tiny")


@pytest.fixture(scope="module")
def arch_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("arch") / "arch.json"
    codec.save_json(tiny_spec(), path)
    return path


def train(run_dir: Path, *overrides: str, check: bool = True, logger: str = "logger=none",
          crash_after_steps: int | None = None) -> subprocess.CompletedProcess:
    """``python train.py <TINY> <logger> <overrides>`` in the test process (W&B offline)."""
    env = {}
    if crash_after_steps is not None:  # fault injection: not a config key
        env["S3NAS_FAULT_INTERRUPT_AFTER_STEPS"] = str(crash_after_steps)
    return run_inprocess(["train.py", *TINY, logger, *overrides, f"hydra.run.dir={run_dir}"], env=env, check=check)


def summary_of(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def weights_of(run_dir: Path) -> dict:
    return torch.load(run_dir / "weights.pt", map_location="cpu", weights_only=False)["state_dict"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory, arch_file) -> dict:
    """reference (uninterrupted, W&B offline, ONNX), crashed at step 6 then resumed from its run dir,
    and a fresh dir resumed with ckpt_path= from the crashed run's epoch-1 checkpoint."""
    reference = tmp_path_factory.mktemp("reference")
    resumed = tmp_path_factory.mktemp("resumed")
    from_ckpt = tmp_path_factory.mktemp("from_ckpt")
    train(reference, f"arch={arch_file}", "export.onnx=true", logger="logger=wandb")
    crashed = train(resumed, f"arch={arch_file}", crash_after_steps=6, check=False)
    assert crashed.returncode != 0 and "simulated crash" in crashed.stderr
    assert not (resumed / "summary.json").exists() and not (resumed / "weights.pt").exists()
    last = resumed / "checkpoints" / "last.ckpt"
    assert last.exists()
    saved = tmp_path_factory.mktemp("saved") / "epoch1.ckpt"
    shutil.copy(last, saved)
    train(resumed)
    train(from_ckpt, f"ckpt_path={saved}")  # no arch=: taken from the checkpoint
    return {"reference": reference, "resumed": resumed, "from_ckpt": from_ckpt, "saved": saved}


# ----------------------------------------------------------------------------------------- outputs
def test_summary_holds_the_figures(runs, arch_file):
    import simulator
    from s3nas.arch.graph import archspec_to_graph

    summary = summary_of(runs["reference"])
    for key in SUMMARY_KEYS:
        assert summary.get(key) is not None, key
    assert 0.0 <= summary["test_acc"] <= 1.0 and 0.0 <= summary["val_acc"] <= 1.0
    assert summary["epochs"] == 3 and summary["steps"] == 12
    assert summary["arch"] == codec.encode(tiny_spec())
    # latency and MACs: the simulator at the deployment shape (224, 1000 classes) on midap
    report = simulator.simulate(archspec_to_graph(tiny_spec(), input_size=224), simulator.load_profile("midap"))
    assert summary["latency_ms"] == pytest.approx(report.latency_ms)
    assert summary["macs"] == report.macs and summary["hardware"] == "midap"
    # params of the trained network (10 digit classes)
    from s3nas.nn.builder import build_model

    assert summary["params"] == sum(p.numel() for p in build_model(tiny_spec(), num_classes=10).parameters())
    # lr scaled by the batch (the digits recipe's 0.032 per 256 images, x2 the paper's 0.016)
    assert summary["lr"] == pytest.approx(0.032 * 32 / 256)


def test_run_dir_holds_arch_checkpoints_weights(runs):
    run_dir = runs["reference"]
    assert codec.load_json(run_dir / "arch.json") == tiny_spec()
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["best.pt", "last.ckpt"]
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert any(k.startswith("ema.module.") for k in checkpoint["state_dict"])
    assert checkpoint["s3nas_train"]["num_classes"] == 10
    # weights.pt is the EMA network of the last checkpoint
    ema = {k[len("ema.module."):]: v for k, v in checkpoint["state_dict"].items() if k.startswith("ema.module.")}
    weights = weights_of(run_dir)
    assert weights.keys() == ema.keys()
    assert all(torch.equal(weights[k], ema[k]) for k in weights)
    assert not list(run_dir.glob(".*.tmp"))


def test_wandb_offline_run_has_final_metrics_and_weights_artifact(runs):
    runs_dir = runs["reference"] / "wandb"
    run = next(runs_dir.glob("offline-run-*"))
    data = next(run.glob("*.wandb")).read_bytes()
    assert b"weights-" in data and b"weights.pt" in data and b"model.onnx" in data  # the model artifact
    if shutil.which("wandb") is None:
        pytest.skip("wandb CLI not on PATH")
    proc = subprocess.run(["wandb", "leet", "inspect", "--summary", "--json", str(run)], capture_output=True,
                          text=True, timeout=60, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        pytest.skip(f"wandb leet inspect unavailable: {proc.stderr.strip()[:200]}")
    summary = json.loads(proc.stdout)["summary"]
    reference = summary_of(runs["reference"])
    for key in ("test_acc", "params", "macs", "latency_ms"):
        assert summary[key] == pytest.approx(reference[key]), key
    assert "val/acc" in summary and "train/loss_epoch" in summary  # the curves


# ----------------------------------------------------------------------------------------- resume
def test_resume_from_run_dir_equals_uninterrupted(runs):
    reference, resumed = summary_of(runs["reference"]), summary_of(runs["resumed"])
    assert resumed["resumed_from"].endswith("last.ckpt")
    assert resumed["test_acc"] == reference["test_acc"] and resumed["val_acc"] == reference["val_acc"]
    a, b = weights_of(runs["reference"]), weights_of(runs["resumed"])
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_from_ckpt_path_equals_uninterrupted(runs):
    reference, other = summary_of(runs["reference"]), summary_of(runs["from_ckpt"])
    assert other["resumed_from"] == str(runs["saved"])
    assert other["arch"] == reference["arch"]
    assert other["test_acc"] == reference["test_acc"]
    a, b = weights_of(runs["reference"]), weights_of(runs["from_ckpt"])
    assert all(torch.equal(a[k], b[k]) for k in a)


# ----------------------------------------------------------------------------------------- export
def test_export_onnx_matches_onnxruntime(runs):
    summary = summary_of(runs["reference"])
    onnx_path = runs["reference"] / "model.onnx"
    assert onnx_path.is_file() and summary["onnx"]["checked"]
    assert summary["onnx"]["max_abs_diff"] <= 1e-4 and summary["onnx"]["input_size"] == 16
    # independent check: onnxruntime vs the network rebuilt from weights.pt, random and real digits
    import numpy as np
    import onnxruntime as ort

    from s3nas.data import build_datamodule
    from s3nas.train.export import load_trained

    model, _ = load_trained(runs["reference"])
    datamodule = build_datamodule({"name": "digits", "image_size": 16, "batch_size": 32})
    datamodule.setup("test")
    real = next(iter(datamodule.test_dataloader()))[0]
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    for batch in (torch.randn(5, 3, 16, 16), real):
        got = session.run(None, {session.get_inputs()[0].name: batch.numpy()})[0]
        with torch.no_grad():
            expected = model(batch).numpy()
        assert got.shape == expected.shape
        assert float(np.max(np.abs(got - expected))) <= 1e-4
    # the trained network is not trivial: its argmax on real digits is what onnxruntime says
    assert (got.argmax(1) == expected.argmax(1)).all()


def test_export_command_other_input_size(runs, tmp_path):
    out = tmp_path / "m32.onnx"
    proc = run_inprocess(["-m", "s3nas.train.export_app", f"run_dir={runs['resumed']}", "input_size=32",
                          f"output={out}", f"hydra.run.dir={tmp_path / 'export'}"])
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    from s3nas.outputs import ExportSummary, validate_summary_file

    summary = validate_summary_file(tmp_path / "export" / "summary.json")  # the export's typed summary
    assert isinstance(summary, ExportSummary) and summary.onnx.to_dict() == result
    assert result["input_size"] == 32 and result["max_abs_diff"] <= 1e-4
    assert set(result["max_abs_diff_by_input"]) == {"random", "real"}
    import onnx

    model = onnx.load(str(out))
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in dims[1:]] == [3, 32, 32]


def test_export_command_bad_run_dir(tmp_path):
    """A directory that is not a train run: one line, exit 2, and nothing left behind (neither a model nor the
    command's own Hydra run dir, which the error comes after)."""
    proc = run_inprocess(["-m", "s3nas.train.export_app", f"run_dir={tmp_path}", f"hydra.run.dir={tmp_path / 'hydra'}"],
                         check=False)
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: run_dir:")
    assert not (tmp_path / "model.onnx").exists()
    assert not (tmp_path / "hydra").exists()


# ----------------------------------------------------------------------------------------- errors
@pytest.fixture
def compose_train(compose_cfg):
    def _compose(*overrides):
        return compose_cfg([*TINY, "logger=none", *overrides], config_name="train")

    return _compose


@pytest.mark.parametrize("content, needle", [
    (None, "no file or directory"),
    ("{not json", "not valid JSON"),
    ("UNKNOWN_BLOCK", "is not a block type"),
])
def test_bad_arch_file_is_one_clear_error(compose_train, tmp_path, content, needle):
    from s3nas.errors import ConfigError
    from s3nas.train.runner import check_train

    path = tmp_path / "in" / "arch.json"
    if content == "UNKNOWN_BLOCK":
        data = codec.to_dict(tiny_spec())
        data["blocks"][1]["type"] = "transformer"
        content = json.dumps(data)
    if content is not None:
        path.parent.mkdir()
        path.write_text(content)
    cfg = compose_train(f"arch={path}")
    with pytest.raises(ConfigError) as error:
        check_train(cfg)
    message = str(error.value)
    assert needle in message and "\n" not in message and message.startswith(("arch", str(path)))


def test_unknown_timm_model_names_close_ones(compose_train):
    from s3nas.errors import ConfigError
    from s3nas.train.runner import check_train

    with pytest.raises(ConfigError, match=r"timm:mobilenetv2_10 'is not a timm model|mobilenetv2_100"):
        check_train(compose_train("arch=timm:mobilenetv2_10"))


def test_latency_is_simulated_at_the_archs_own_input_size(compose_train, tmp_path):
    """A scaled arch.json says its resolution (e.g. 256): train.py simulates it there unless deploy.input_size."""
    import dataclasses

    import simulator
    from s3nas.arch.graph import archspec_to_graph
    from s3nas.train.runner import check_train

    spec = dataclasses.replace(tiny_spec(), input_size=96)
    path = tmp_path / "arch.json"
    path.write_text(json.dumps(codec.to_dict(spec)))
    profile = simulator.load_profile("midap")
    own = simulator.simulate(archspec_to_graph(spec, input_size=96), profile).latency_ms
    at_224 = simulator.simulate(archspec_to_graph(spec, input_size=224), profile).latency_ms
    assert own < at_224
    assert check_train(compose_train(f"arch={path}")).latency.latency_ms == pytest.approx(own)
    assert check_train(compose_train(f"arch={path}", "deploy.input_size=224")).latency.latency_ms == pytest.approx(at_224)


def test_missing_arch_is_an_error(compose_train):
    from s3nas.errors import ConfigError
    from s3nas.train.runner import check_train

    with pytest.raises(ConfigError, match="arch: not set"):
        check_train(compose_train())


def image_tree(root: Path, classes: int = 3) -> Path:
    """A class-folder dataset (data=imagenet) with ``classes`` classes of two 20x20 images."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for c in range(classes):
            (root / split / f"c{c}").mkdir(parents=True)
            for i in range(2):
                Image.fromarray(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)).save(root / split / f"c{c}" / f"{i}.png")
    return root


IMAGES_3_CLASSES = ["data=imagenet", "data.image_size=16", "data.num_workers=0", "data.pin_memory=false"]


def test_class_count_mismatch_on_resume(compose_train, runs, tmp_path):
    from s3nas.errors import ConfigError
    from s3nas.train.runner import check_train

    root = image_tree(tmp_path / "images")
    with pytest.raises(ConfigError, match=r"num_classes=3 .*num_classes=10\b"):
        check_train(compose_train(f"ckpt_path={runs['saved']}", *IMAGES_3_CLASSES, f"data.root={root}"))


def test_cli_error_is_one_line_and_writes_nothing(tmp_path, run_cmd):
    """In a real process: exit status 2, one line on stderr (nothing else printed), no run dir content."""
    run_dir = tmp_path / "run"
    proc = run_cmd(["train.py", *TINY, "logger=none", "arch=timm:definitely_not_a_model", f"hydra.run.dir={run_dir}"],
                   check=False)
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: arch:"), proc.stderr[-2000:]
    assert not run_dir.exists() or not any(run_dir.iterdir())


def test_cli_mismatched_resume_leaves_run_dir_untouched(runs, tmp_path):
    run_dir = tmp_path / "copy"
    shutil.copytree(runs["resumed"], run_dir)

    def state():  # Hydra itself rewrites .hydra/ and its job log before any task code runs
        return sorted((p.relative_to(run_dir), p.stat().st_mtime_ns) for p in run_dir.rglob("*")
                      if ".hydra" not in p.parts and p.name != "train.log")

    before = state()
    root = image_tree(tmp_path / "images")
    proc = train(run_dir, *IMAGES_3_CLASSES, f"data.root={root}", check=False)
    assert proc.returncode == 2 and "num_classes" in proc.stderr
    assert len([line for line in proc.stderr.splitlines() if line.strip()]) == 1
    assert state() == before


# ----------------------------------------------------------------------------------------- timm
def test_timm_zoo_network_trains_and_is_simulated(tmp_path):
    import simulator
    import timm

    from simulator.frontends.torch import graph_from_module

    run_dir = tmp_path / "mnv2"
    train(run_dir, "arch=timm:mobilenetv2_050", "recipe.epochs=1", "trainer.limit_train_batches=2")
    summary = summary_of(run_dir)
    assert summary["arch"] == "timm:mobilenetv2_050" and summary["network"] == "mobilenetv2_050"
    assert summary["params"] == sum(p.numel() for p in timm.create_model("mobilenetv2_050", num_classes=10).parameters())
    graph = graph_from_module(timm.create_model("mobilenetv2_050", num_classes=1000), (3, 224, 224))
    report = simulator.simulate(graph, simulator.load_profile("midap"))
    assert summary["latency_ms"] == pytest.approx(report.latency_ms) and summary["macs"] == report.macs
    assert not (run_dir / "arch.json").exists()  # timm networks are no ArchSpec
    assert (run_dir / "weights.pt").is_file()


def test_arch_accepts_a_search_run_dir(tmp_path, arch_file):
    from s3nas.errors import ConfigError
    from s3nas.train.network import resolve_network

    run_dir = tmp_path / "search_run"
    run_dir.mkdir()
    shutil.copy(arch_file, run_dir / "arch.json")
    source = resolve_network(str(run_dir))
    assert source.spec == tiny_spec() and source.label == codec.encode(tiny_spec())
    assert resolve_network(str(run_dir / "arch.json")).spec == tiny_spec()
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="holds no arch.json"):
        resolve_network(str(tmp_path / "empty"))


def test_paper_retrain_preset_holds_the_paper_schedule(compose_cfg):
    from s3nas.train.runner import recipe_settings, world_size_of

    cfg = compose_cfg(["experiment=paper_retrain", "arch=timm:efficientnet_b0"], config_name="train")
    recipe = cfg.recipe
    assert recipe.epochs == 350 and recipe.scheduler.warmup_epochs == 5 and recipe.ema.decay == 0.9999
    assert (recipe.optimizer.alpha, recipe.optimizer.momentum, recipe.optimizer.eps) == (0.9, 0.9, 1e-3)
    assert recipe.label_smoothing == 0.1 and recipe.drop_path == 0.2 and recipe.optimizer.weight_decay == 1e-5
    assert cfg.trainer.precision == "bf16-mixed" and cfg.trainer.strategy == "ddp" and recipe.channels_last
    global_batch = cfg.data.batch_size * world_size_of(cfg.trainer)
    assert global_batch == 1024
    steps_per_epoch = 1_281_167 // global_batch
    settings = recipe_settings(cfg, global_batch=global_batch, steps_per_epoch=steps_per_epoch, epochs=350)
    assert settings.lr == pytest.approx(0.064)
    assert settings.warmup_steps == 5 * steps_per_epoch
    assert settings.decay_steps == round(2.4 * steps_per_epoch)


def test_tf_ema_warmup_and_step_schedule():
    from s3nas.train.module import ModelEma, RecipeSettings, RetrainModule

    ema = ModelEma(torch.nn.Linear(2, 2), decay=0.9999, warmup="tf")
    assert ema.get_decay(0) == pytest.approx(0.1) and ema.get_decay(90) == pytest.approx(91 / 100)
    assert ema.get_decay(10_000_000) == 0.9999
    settings = RecipeSettings(lr=0.1, warmup_steps=10, warmup_lr_init=0.0, decay_rate=0.5, decay_steps=5)
    module = RetrainModule(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2)), settings, num_classes=2)
    config = module.configure_optimizers()
    optimizer, scheduler = config["optimizer"], config["lr_scheduler"]["scheduler"]
    assert type(optimizer).__name__ == "RMSpropTF"

    def lr_at(step):
        scheduler.step_update(num_updates=step)
        return optimizer.param_groups[0]["lr"]

    assert lr_at(5) == pytest.approx(0.05)  # linear warm-up
    assert lr_at(10) == pytest.approx(0.1) and lr_at(14) == pytest.approx(0.1)
    assert lr_at(15) == pytest.approx(0.05) and lr_at(20) == pytest.approx(0.025)  # x0.5 every 5 steps
    # no weight decay on biases (timm's filter_bias_and_bn)
    assert sorted(group["weight_decay"] for group in optimizer.param_groups) == [0.0, settings.weight_decay]


def test_validation_accuracy_is_correct_over_seen_across_uneven_batches():
    """val/acc and val/acc_raw (torchmetrics) are correct / seen over the whole split, not a mean of batch means."""
    import pytorch_lightning as pl

    from s3nas.train.module import RecipeSettings, RetrainModule

    torch.manual_seed(0)
    images, labels = torch.randn(37, 4), torch.randint(0, 3, (37,))  # batches of 16, 16 and 5
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(images, labels), batch_size=16)
    module = RetrainModule(torch.nn.Linear(4, 3), RecipeSettings(lr=0.1), meta={"num_classes": 3})
    with torch.no_grad():
        module.model.weight.add_(3 * torch.randn(3, 4))  # the EMA copy keeps the initial weights: two accuracies
        ema_correct = (module.eval_model(images).argmax(1) == labels).sum().item()
        raw_correct = (module.model(images).argmax(1) == labels).sum().item()
    batch_means = [(module.eval_model(x).argmax(1) == y).float().mean().item() for x, y in loader]
    assert abs(sum(batch_means) / 3 - ema_correct / 37) > 1e-3  # the two averages differ on this split
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                         enable_checkpointing=False)
    metrics = trainer.validate(module, loader, verbose=False)[0]
    assert metrics["val/acc"] == pytest.approx(ema_correct / 37)
    assert metrics["val/acc_raw"] == pytest.approx(raw_correct / 37)
    assert ema_correct != raw_correct


def test_random_shift_translates_each_image_within_the_bound():
    from s3nas.train.module import random_shift

    images = torch.randn(16, 3, 12, 12)
    torch.manual_seed(0)
    shifted = random_shift(images, 2)
    torch.manual_seed(0)
    assert torch.equal(shifted, random_shift(images, 2))  # draws follow torch's (per-epoch seeded) RNG
    assert shifted.shape == images.shape
    padded = torch.nn.functional.pad(images, (2, 2, 2, 2), mode="replicate")
    for image, out in zip(padded, shifted):  # every output is a 12x12 window of its replicate-padded input
        assert any(torch.equal(out, image[:, dy:dy + 12, dx:dx + 12]) for dy in range(5) for dx in range(5))
    assert not torch.equal(shifted, images)


def test_default_recipe_learns_the_digits_at_small_scale(arch_file, tmp_path, run_inproc):
    """The >= 0.97 headline's small-scale counterpart (default suite): the default digits recipe, its full
    10 epochs on every batch, retrains the 3-block tiny network at 16x16 to far above chance (10 classes;
    measured 0.85) in a few seconds of training."""
    run_dir = tmp_path / "run"
    run_inproc(["train.py", f"arch={arch_file}", "data.image_size=16", "recipe.num_threads=1", "callbacks=none",
                "logger=none", "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false",
                f"hydra.run.dir={run_dir}"])
    summary = summary_of(run_dir)
    assert summary["epochs"] == 10 and summary["steps"] == 10 * 20  # 1257 training images, batches of 64
    assert summary["test_acc"] >= 0.75 and summary["val_acc"] >= 0.75, summary


@pytest.mark.slow
def test_searched_network_reaches_097_on_digits(tmp_path):
    """The issue's end-to-end claim: `search.py latency=2.5ms`, then `train.py arch=<run dir>` with the
    default digits recipe, gives test_acc >= 0.97 and a verified model.onnx (about 15-25 min on 2 cores)."""
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    env.update(WANDB_MODE="offline", WANDB_SILENT="true", OMP_NUM_THREADS="1")
    search_dir, train_dir = tmp_path / "search", tmp_path / "train"
    subprocess.run([sys.executable, "search.py", "latency=2.5ms", "logger=none", f"hydra.run.dir={search_dir}"],
                   cwd=REPO, env=env, check=True, capture_output=True, timeout=3600)
    proc = subprocess.run([sys.executable, "train.py", f"arch={search_dir}", "export.onnx=true", "logger=none",
                           f"hydra.run.dir={train_dir}"], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=3600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = summary_of(train_dir)
    assert summary["test_acc"] >= 0.97, summary
    assert summary["latency_ms"] <= 2.5 and summary["onnx"]["max_abs_diff"] <= 1e-4


def test_timm_classifier_gets_the_s3nas_head_init():
    """timm's r = 1/sqrt(classes) head init gives 10-class logits of std ~5; train.py uses 1/sqrt(in) for all."""
    import math

    from s3nas.train.network import NetworkSource, build_network

    model = build_network(NetworkSource(timm_name="mobilenetv2_100"), num_classes=10)
    weight = model.get_classifier().weight
    bound = 1.0 / math.sqrt(weight.shape[1])
    assert float(weight.abs().max()) <= bound and float(weight.abs().max()) > 0.9 * bound
    model.eval()
    with torch.no_grad():
        logits = model(torch.randn(8, 3, 32, 32))
    assert float(logits.std()) < 2.0  # timm's own init: ~5
