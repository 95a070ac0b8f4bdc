"""Selective SE removal (S3NAS section 4.3.3), the command ``python -m s3nas.postsearch.se_removal run_dir=<train run>
fraction=0.4`` (s3nas/postsearch/se_removal.py names this module's ``check`` and ``main``).

From a trained network (a train.py run dir: its EMA weights in weights.pt) ``record_excitations`` hooks
every SE block's gate (the sigmoid output, one value per channel) and runs up to ``images`` images
(10,000 in the paper; all of the split when it has fewer, a seeded random subset otherwise).
``score_blocks``: per channel the standard deviation of the excitation across images (population std),
the block's score the mean over channels; a low score means the channel multiply is close to a constant
that the next convolution could absorb. ``lowest_blocks`` picks the blocks to strip by ``count``,
``fraction`` (of the SE blocks) or ``threshold`` (score below it), lowest score first (ties: lower index).
The command writes arch.json (the network without those SE blocks, to be retrained), scores.csv and
summary.json (scores, removed blocks, simulated latency before and after).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterable, Optional

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset

from s3nas.arch import codec
from s3nas.arch.params import block_input_channels
from s3nas.arch.shapes import block_mid_channels
from s3nas.arch.spec import ArchSpec
from s3nas.data import build_datamodule
from s3nas.errors import ConfigError
from s3nas.latency.backend import make_backend
from s3nas.outputs import SeRemovalSummary, write_summary
from s3nas.postsearch.postprocess import se_blocks, without_se
from s3nas.postsearch.stepio import change_fields, measure
from s3nas.train.export import load_trained
from s3nas.train.network import NetworkSource
from s3nas.utils.io import atomic_write_text

SE_MODULE_SUFFIX = ".se"


# ------------------------------------------------------------------------------------------- recording
def se_gates(model: Any) -> dict[int, Any]:
    """Block index -> the gate module (sigmoid) of that block's SE, for an ``s3nas.nn.builder.S3Net``."""
    gates = {}
    for name, module in model.named_modules():
        parts = name.split(".")
        if len(parts) == 3 and parts[0] == "blocks" and parts[2] == "se" and hasattr(module, "gate"):
            gates[int(parts[1])] = module.gate
    return gates


def record_excitations(model: Any, batches: Iterable[Any], max_images: int) -> dict[int, np.ndarray]:
    """Block index -> (images, channels) excitation values of every SE block over up to ``max_images`` images."""
    gates = se_gates(model)
    recorded: dict[int, list[np.ndarray]] = {i: [] for i in gates}
    handles = [gate.register_forward_hook(lambda _m, _inp, out, i=i: recorded[i].append(
        out.detach().flatten(1).double().cpu().numpy())) for i, gate in gates.items()]
    seen = 0
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for batch in batches:
                images = batch[0] if isinstance(batch, (list, tuple)) else batch
                images = images[:max_images - seen]
                if len(images) == 0:
                    break
                model(images)
                seen += len(images)
                if seen >= max_images:
                    break
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return {i: np.concatenate(parts, axis=0) for i, parts in recorded.items() if parts}


def score_blocks(excitations: dict[int, np.ndarray]) -> dict[int, float]:
    """Block index -> mean over channels of the per-channel standard deviation across images."""
    return {i: float(np.std(values, axis=0).mean()) for i, values in excitations.items()}


def lowest_blocks(scores: dict[int, float], *, count: Optional[int] = None, fraction: Optional[float] = None,
                  threshold: Optional[float] = None) -> list[int]:
    """The SE blocks to remove, lowest score first; exactly one of count, fraction, threshold."""
    given = [k for k, v in (("count", count), ("fraction", fraction), ("threshold", threshold)) if v is not None]
    if len(given) != 1:
        raise ConfigError(f"count/fraction/threshold: set exactly one (got {', '.join(given) or 'none'})")
    ranked = sorted(scores, key=lambda i: (scores[i], i))
    if threshold is not None:
        return [i for i in ranked if scores[i] < threshold]
    if fraction is not None:
        count = int(math.floor(fraction * len(ranked) + 0.5))
    if count > len(ranked):
        raise ConfigError(f"count: {count} is more than the {len(ranked)} SE blocks of the network")
    return ranked[:count]


# ------------------------------------------------------------------------------------------- command
@dataclass
class RemovalInputs:
    """What ``check`` resolved."""

    model: Any
    meta: dict
    spec: ArchSpec
    backend: Any
    datamodule: Any
    run_dir: Path
    source_dir: Path


def _selection(cfg: Any) -> dict:
    """count/fraction/threshold from the config (default_fraction when none is set), checked."""
    chosen = {k: cfg.get(k) for k in ("count", "fraction", "threshold") if cfg.get(k) is not None}
    if len(chosen) > 1:
        raise ConfigError(f"{'/'.join(chosen)}: set only one of count, fraction, threshold")
    if not chosen:
        chosen = {"fraction": cfg.get("default_fraction")}
    (key, value), = chosen.items()
    name = "default_fraction" if key == "fraction" and cfg.get("fraction") is None else key
    number = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if key == "count" and not (isinstance(value, int) and not isinstance(value, bool) and value >= 0):
        raise ConfigError(f"count: must be an integer >= 0 (SE blocks to remove), got {value!r}")
    if key == "fraction" and not (number and 0 <= value <= 1):
        raise ConfigError(f"{name}: must be a number in [0, 1] (share of the SE blocks to remove), got {value!r}")
    if key == "threshold" and not (number and value >= 0):
        raise ConfigError(f"threshold: must be a number >= 0 (remove SE whose score is below it), got {value!r}")
    return {key: value}


def check(cfg: Any) -> RemovalInputs:
    """Every user-caused error before anything is written (the se_removal command's check)."""
    selection = _selection(cfg)
    images = cfg.get("images")
    if isinstance(images, bool) or not isinstance(images, int) or images < 2:
        raise ConfigError(f"images: must be an integer >= 2 (a standard deviation needs images), got {images!r}")
    if cfg.get("split") not in ("train", "val", "test"):
        raise ConfigError(f"split: {cfg.get('split')!r} is not a split; use train, val or test")
    text = cfg.get("run_dir")
    if text is None or str(text).strip() == "":
        raise ConfigError("run_dir: not set; pass run_dir=<train.py run dir> (it holds the trained weights.pt)")
    source_dir = Path(str(text)).expanduser()
    if not source_dir.is_dir():
        raise ConfigError(f"run_dir: no directory '{source_dir}'; pass a train.py run dir")
    model, meta = load_trained(source_dir)  # ConfigError: no weights.pt / last.ckpt, unreadable, not train.py's
    source = NetworkSource.from_meta(meta["network"])
    if source.is_timm:
        raise ConfigError(f"run_dir: '{source_dir}' trained timm:{source.timm_name}; SE removal rewrites an s3nas "
                          f"ArchSpec (train an arch.json)")
    spec = source.spec
    n_se = len(se_blocks(spec))
    if n_se == 0:
        raise ConfigError(f"run_dir: the network of '{source_dir}' has no SE blocks; add them with "
                          f"`python -m s3nas.postsearch.postprocess arch=... se=all` and retrain")
    if "count" in selection and selection["count"] > n_se:
        raise ConfigError(f"count: {selection['count']} is more than the {n_se} SE blocks of the network")
    backend = make_backend(cfg.hardware)
    image_size = int(cfg.get("image_size") or meta.get("image_size") or cfg.data.get("image_size"))
    datamodule = build_datamodule(cfg.data, image_size=image_size, num_workers=0)
    if int(datamodule.in_channels) != int(meta.get("in_channels", 3)):
        raise ConfigError(f"data: {cfg.data.name} has {datamodule.in_channels} channels but the network was "
                          f"trained on {meta.get('in_channels')}")
    datamodule.prepare_data()
    datamodule.setup("fit")
    datamodule.setup("test")
    return RemovalInputs(model=model, meta=meta, spec=spec, backend=backend, datamodule=datamodule,
                         run_dir=Path(str(cfg.paths.output_dir)), source_dir=source_dir.resolve())


def _loader(datamodule: Any, split: str, max_images: int, seed: int, batch_size: int) -> tuple[Any, int]:
    """Non-shuffled loader over up to ``max_images`` images of ``split`` (a seeded random subset when larger)."""
    dataset = {"train": datamodule.train_dataset, "val": datamodule.val_dataset,
               "test": datamodule.test_dataset}[split]
    if len(dataset) > max_images:
        generator = torch.Generator().manual_seed(seed)
        dataset = Subset(dataset, torch.randperm(len(dataset), generator=generator)[:max_images].tolist())
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0), len(dataset)


def run_removal(cfg: Any, checked: Optional[RemovalInputs] = None) -> dict:
    """Record, score, remove; write arch.json, scores.csv and summary.json; returns the summary."""
    checked = checked or check(cfg)
    if cfg.get("num_threads"):
        torch.set_num_threads(int(cfg.num_threads))
    loader, n_images = _loader(checked.datamodule, str(cfg.split), int(cfg.images), int(cfg.seed),
                               int(cfg.batch_size))
    excitations = record_excitations(checked.model, loader, n_images)
    scores = score_blocks(excitations)
    if sorted(scores) != se_blocks(checked.spec):  # the weights and the recorded ArchSpec must agree
        raise RuntimeError(f"recorded SE blocks {sorted(scores)} differ from the ArchSpec's {se_blocks(checked.spec)}")
    removed = lowest_blocks(scores, **_selection(cfg))
    spec = checked.spec
    meta = dict(spec.meta)
    meta["se_removal"] = {"source": str(checked.source_dir), "removed_blocks": removed, "images": n_images,
                          "split": str(cfg.split), "data": str(cfg.data.name)}
    new_spec = replace(without_se(spec, removed), meta=meta)
    before, after = measure(spec, checked.backend), measure(new_spec, checked.backend)
    inputs = block_input_channels(spec)
    ranked = sorted(scores, key=lambda i: (scores[i], i))
    rows = [{"block": i, "stage": spec.blocks[i].stage, "channels": sum(block_mid_channels(spec.blocks[i], inputs[i])),
             "score": scores[i], "rank": ranked.index(i), "removed": i in removed} for i in sorted(scores)]
    csv = "block,stage,channels,score,rank,removed\n" + "".join(
        f"{r['block']},{r['stage']},{r['channels']},{r['score']:.6g},{r['rank']},{str(r['removed']).lower()}\n"
        for r in rows)
    summary = SeRemovalSummary(
        **change_fields(before, after),
        input_size=new_spec.input_size,
        removed_blocks=removed,
        se_blocks=se_blocks(new_spec),
        se_blocks_before=se_blocks(spec),
        scores={str(r["block"]): r["score"] for r in rows},
        score="mean over channels of the per-channel standard deviation of the SE excitation across images",
        images=n_images,
        split=str(cfg.split),
        data=str(cfg.data.name),
        image_size=int(checked.datamodule.image_size),
        trained_on=checked.meta.get("data"),
        weights="EMA" if checked.meta.get("ema") else "raw",
        hardware=checked.backend.name,
        arch=codec.encode(new_spec),
        arch_origin=str(checked.source_dir),
    )
    codec.save_json(new_spec, checked.run_dir / "arch.json")
    atomic_write_text(checked.run_dir / "scores.csv", csv)
    write_summary(checked.run_dir, summary)
    summary = summary.to_dict()
    print(f"SE scores over {n_images} {summary['data']} {summary['split']} images ({summary['weights']} weights), "
          f"lowest first:")
    print(f"{'block':>5s} {'stage':>5s} {'channels':>8s} {'score':>9s}  removed")
    for i in ranked:
        r = rows[sorted(scores).index(i)]
        print(f"{i:5d} {r['stage']:5d} {r['channels']:8d} {r['score']:9.5f}  {'yes' if r['removed'] else ''}")
    print(f"removed SE from {len(removed)} of {len(scores)} blocks: latency {before.latency_ms:.4f} -> "
          f"{after.latency_ms:.4f} ms ({after.latency_source.split(' (')[0]} on {summary['hardware']}), "
          f"params {before.params:,} -> "
          f"{after.params:,}; retrain it: python train.py arch={checked.run_dir}")
    return summary


def main(cfg: Any, checked: Optional[RemovalInputs] = None) -> float:
    """Hydra task: returns the new network's simulated latency (ms)."""
    return run_removal(cfg, checked)["latency_ms"]
