"""The Lightning module of the search: one fit, two phases (warm-up, then latency-aware search).

``SearchModule`` trains one supernet with timm's RMSpropTF (two parameter groups: weights with weight decay,
thresholds without and with their own lr scale / eps / momentum), torch's ``StepLR`` for the paper's
staircase decay (x0.97 every 2.4 epochs, stepped per optimizer step), gradient clipping of the weights and
label-smoothed CE. Epochs ``[0, warmup_epochs)`` are the warm-up (CE only, every sub-path sampled with equal
probability); the later epochs add the latency loss (paper Eq. 9) and train the thresholds. The phase is a
function of the epoch, so Lightning's own checkpoint/resume covers both phases. Every step reseeds torch from
(seed, global step): a resumed run draws the same sub-paths and dropout masks as an uninterrupted one.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
import torchmetrics
from timm.optim import RMSpropTF

from s3nas.arch.space import canonical
from s3nas.arch.spec import Branch
from s3nas.errors import ConfigError
from s3nas.latency.loss import latency_loss
from s3nas.runtime.timing import Timings
from s3nas.search.objectives import Bank, LatencyObjective, closeness, meets

#: the ladder a line search lays on a measured device (``SearchModule._lay_ladder``): how far under the target it
#: reaches, the spacing of its states (fraction of the target) and how many it measures at most
LADDER_DEPTH = 0.1
LADDER_SPACING = 0.01
LADDER_RUNGS = 8

PHASES = ("warmup", "search")


@dataclass
class OptimSettings:
    """The optimizer numbers of one run: ``lr`` already scaled by the global batch, decay in steps."""

    lr: float
    alpha: float
    momentum: float
    eps: float
    weight_decay: float
    decay_rate: float
    decay_steps: int  # optimizer steps between two x decay_rate
    gradient_clip_val: float | None
    threshold_lr_scale: float
    threshold_eps: float | None
    threshold_momentum: float | None
    threshold_square_avg_init: float | None
    threshold_init: str  # zero | below_norm
    threshold_init_margin: float
    approach_band: float | None = None
    approach_floor: float = 0.1
    latency_grad_to_weights: bool = True
    line_search: bool = False
    choice_lr: float = 0.05

    @classmethod
    def from_schedule(cls, schedule, *, global_batch: int, steps_per_epoch: int) -> "OptimSettings":
        """Settings from a validated ``schedule`` config (lr = lr_per_256 * global_batch / 256)."""
        o, t = schedule.optimizer, schedule.thresholds
        return cls(lr=float(o.lr_per_256) * global_batch / 256.0, alpha=float(o.alpha), momentum=float(o.momentum),
                   eps=float(o.eps), weight_decay=float(o.weight_decay), decay_rate=float(o.decay_rate),
                   decay_steps=max(1, round(float(o.decay_epochs) * steps_per_epoch)),
                   gradient_clip_val=schedule.gradient_clip_val, threshold_lr_scale=float(t.lr_scale),
                   threshold_eps=t.eps, threshold_momentum=t.momentum, threshold_square_avg_init=t.square_avg_init,
                   threshold_init=str(t.init), threshold_init_margin=float(t.init_margin),
                   approach_band=t.approach_band, approach_floor=float(t.approach_floor),
                   latency_grad_to_weights=bool(t.latency_grad_to_weights), line_search=bool(t.line_search),
                   choice_lr=float(getattr(t, "choice_lr", 0.05)))


class SearchModule(pl.LightningModule):
    """Warm-up then latency-aware search of one supernet in a single Lightning fit."""

    def __init__(self, supernet: torch.nn.Module, optim: OptimSettings, *, estimator=None, target_ms: float = 0.0,
                 warmup_epochs: int, lambda1: float = 15.0, lambda2: float = 100.0,
                 loss_target_ms: float | None = None, label_smoothing: float = 0.1, seed: int = 42,
                 channels_last: bool = False, state_latency=None,
                 banks: list[list[LatencyObjective]] | None = None) -> None:
        """One network against one target (``estimator``, ``target_ms``, ``loss_target_ms``, ``state_latency``), or
        ``banks``: one list of objectives per network searched (several targets: one bank each; several hardware:
        one objective each; ``s3nas.search.objectives``)."""
        super().__init__()
        self.supernet = supernet
        self.optim = optim
        if banks is None:
            banks = [[LatencyObjective("hardware", estimator, float(target_ms),
                                       float(loss_target_ms if loss_target_ms is not None else target_ms),
                                       state_latency)]]
        self.banks = [Bank(list(objectives)) for objectives in banks]
        self.bank_index = 0  # the bank whose thresholds are in the supernet
        self.warmup_epochs = int(warmup_epochs)
        self.lambda1, self.lambda2 = float(lambda1), float(lambda2)
        self.label_smoothing = float(label_smoothing)
        self.seed = int(seed)
        self.channels_last = bool(channels_last)
        num_classes = int(supernet.num_classes)
        self.train_acc = torchmetrics.classification.MulticlassAccuracy(num_classes=num_classes, average="micro")
        self.val_acc = torchmetrics.classification.MulticlassAccuracy(num_classes=num_classes, average="micro")
        if self.channels_last:
            self.supernet.to(memory_format=torch.channels_last)
        self.supernet.set_latency_grad_to_weights(optim.latency_grad_to_weights)
        self.thresholds_initialised = False  # threshold init happens once, at the first search step
        self.threshold_speed = 1.0  # thresholds' lr factor of the current step (approach_band)
        self._before: tuple[float, list] | None = None  # (hard latency, scores) before this step's update
        self.timings = Timings()  # wall time of the latency term and the line searches (search summary timings_s)

    # ---- phase ---------------------------------------------------------------------------------
    @property
    def phase(self) -> str:
        """``warmup`` during the first ``warmup_epochs`` epochs, ``search`` after."""
        try:
            epoch = int(self.trainer.current_epoch)
        except RuntimeError:  # not attached to a trainer
            epoch = self.warmup_epochs
        return "warmup" if epoch < self.warmup_epochs else "search"

    # ---- banks (s3nas.search.objectives) ---------------------------------------------------------
    @property
    def bank(self) -> Bank:
        """The network whose thresholds are in the supernet now."""
        return self.banks[self.bank_index]

    @property
    def objectives(self) -> list[LatencyObjective]:
        return self.bank.objectives

    @property
    def target_ms(self) -> float:
        return self.bank.target_ms

    @property
    def loss_target_ms(self) -> float:
        return self.bank.loss_target_ms

    @property
    def best_feasible(self):
        return self.bank.best_feasible

    @property
    def line_searches(self) -> list[dict]:
        return self.bank.line_searches

    def _optimizer(self):
        try:
            return self.trainer.optimizers[0]
        except (RuntimeError, IndexError, AttributeError):  # not attached to a trainer (after the fit)
            return None

    def use_bank(self, index: int) -> None:
        """Swap bank ``index``'s thresholds (and their optimizer state, during the fit) into the supernet."""
        if index == self.bank_index or len(self.banks) == 1:
            return
        params, optimizer = list(self.supernet.threshold_parameters()), self._optimizer()
        self.bank.store(params, optimizer)
        self.banks[index].load(params, optimizer)
        self.bank_index = index

    def store_bank(self) -> None:
        """Keep the thresholds in the supernet as the current bank's (at the end of the fit, before decoding)."""
        if len(self.banks) > 1:
            self.bank.store(list(self.supernet.threshold_parameters()), self._optimizer())

    @property
    def total_step(self) -> int:
        """Optimizer steps done (both phases)."""
        return int(self.global_step)

    # ---- helpers -------------------------------------------------------------------------------
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return self.supernet(images)

    def _ce(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits.float(), labels, label_smoothing=self.label_smoothing)

    # ---- Lightning hooks -----------------------------------------------------------------------
    def on_train_epoch_start(self) -> None:
        self.supernet.set_phase(self.phase)
        if self.phase == "search" and not self.thresholds_initialised:
            self._start_thresholds()

    def on_train_start(self) -> None:
        # a run resumed mid-epoch (SIGTERM / SIGUSR1 checkpoint) gets no on_train_epoch_start: set the phase here
        self.supernet.set_phase(self.phase)

    def on_validation_epoch_start(self) -> None:
        self.supernet.set_phase("search")  # validation always sees the thresholded network

    def on_validation_epoch_end(self) -> None:
        self.supernet.set_phase(self.phase)

    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        # Seed by step: sub-path sampling and dropout do not depend on how the run got here (resume).
        torch.manual_seed((self.seed * 1_000_003 + self.total_step) % (2**62))
        if self.phase == "search" and len(self.banks) > 1:
            self.use_bank(self.total_step % len(self.banks))  # the targets take turns, step by step

    def training_step(self, batch, batch_idx: int):
        images, labels = batch[0], batch[1]
        logits = self(images)
        ce = self._ce(logits, labels)
        loss = ce
        batch_size = images.shape[0]
        out = {"ce": ce.detach()}
        if self.phase == "search":
            with self.timings.part("latency_term"):
                term, latency_ms = self._latency_term()
            loss = ce + term
            out.update(latency_ms=latency_ms.detach(), latency_loss=term.detach())
            self.log("train/latency_ms", latency_ms, prog_bar=len(self.banks) == 1, batch_size=batch_size)
            self.log("train/latency_loss", term, batch_size=batch_size)
            self.log("train/target_ms", self.target_ms, batch_size=batch_size)
            self.log("train/threshold_speed", self.threshold_speed, batch_size=batch_size)
        self.train_acc(logits.detach(), labels)
        self.log("train/loss", loss, prog_bar=True, batch_size=batch_size)
        self.log("train/ce", ce, prog_bar=True, batch_size=batch_size)
        self.log("train/acc", self.train_acc, batch_size=batch_size)
        self.log("train/lr", self.optimizers().param_groups[0]["lr"], batch_size=batch_size)
        self.log("train/phase", float(self.phase == "search"), batch_size=batch_size)
        out["loss"] = loss
        return out

    def _latency_term(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(latency loss, latency ms of the first objective) of the current state: one term per objective
        (hardware), summed; tracks the best feasible state and the approach speed, and keeps the scores before the
        update for the line search."""
        latencies = [o.differentiable_ms(self.supernet) for o in self.objectives]
        values = [float(ms.detach()) for ms in latencies]
        self._track_feasible(values)
        self.threshold_speed = max(self._approach_speed(ms, o.loss_target_ms) for o, ms in zip(self.objectives, values))
        if self.optim.line_search:
            self._before = (values, self._scores())
        term = sum(latency_loss(ms, o.loss_target_ms, lambda1=self.lambda1, lambda2=self.lambda2)
                   for o, ms in zip(self.objectives, latencies))
        if len(self.objectives) > 1:
            for o, ms in zip(self.objectives, values):
                self.log(f"train/latency_ms/{o.hardware}", ms, batch_size=1)
        return term, latencies[0]

    def validation_step(self, batch, batch_idx: int) -> None:
        images, labels = batch[0], batch[1]
        logits = self(images)
        self.val_acc(logits, labels)
        self.log("val/ce", self._ce(logits, labels), batch_size=images.shape[0], sync_dist=True)
        self.log("val/acc", self.val_acc, prog_bar=True, batch_size=images.shape[0])

    def configure_optimizers(self):
        o = self.optim
        choice_ids = {id(p) for p in self._choice_logits()}  # stepped by _step_choices, not the optimizer
        thresholds = [p for p in self.supernet.threshold_parameters() if id(p) not in choice_ids]
        threshold_ids = {id(p) for p in thresholds} | choice_ids
        weights = [p for p in self.supernet.parameters() if id(p) not in threshold_ids]
        groups = [
            {"params": weights, "lr": o.lr, "weight_decay": o.weight_decay, "name": "weights"},
            {"params": thresholds, "lr": o.lr * o.threshold_lr_scale, "weight_decay": 0.0, "name": "thresholds",
             "eps": o.threshold_eps if o.threshold_eps is not None else o.eps,
             "momentum": o.threshold_momentum if o.threshold_momentum is not None else o.momentum},
        ]
        optimizer = RMSpropTF(groups, lr=o.lr, alpha=o.alpha, eps=o.eps, momentum=o.momentum,
                              weight_decay=o.weight_decay)
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=o.decay_steps, gamma=o.decay_rate)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def _approach_speed(self, latency_ms: float, loss_target_ms: float | None = None) -> float:
        """Thresholds' lr factor: 1 far above the target, down to approach_floor near it, 0 at or below it."""
        band = self.optim.approach_band
        if band is None:
            return 1.0
        target = self.loss_target_ms if loss_target_ms is None else loss_target_ms
        excess_ms = latency_ms - target
        if excess_ms <= 0:
            return 0.0
        return min(1.0, max(self.optim.approach_floor, excess_ms / (band * target)))

    def optimizer_step(self, epoch, batch_idx, optimizer, optimizer_closure=None):
        # Scale the thresholds' lr for this step only, once training_step (run by the closure) has measured
        # the latency; the scheduler keeps owning the base schedule.
        choices = self._choice_logits()
        if (len(optimizer.param_groups) < 2 or self.optim.approach_band is None) and not choices:
            return super().optimizer_step(epoch, batch_idx, optimizer, optimizer_closure)
        group = optimizer.param_groups[1] if len(optimizer.param_groups) > 1 else None
        lr = group["lr"] if group is not None else None
        scaled = group is not None and self.optim.approach_band is not None

        def closure():
            result = optimizer_closure()
            if self.phase == "search" and scaled:
                group["lr"] = lr * self.threshold_speed
            if choices:
                self._step_choices(choices)
            return result

        try:
            return super().optimizer_step(epoch, batch_idx, optimizer, closure)
        finally:
            if group is not None:
                group["lr"] = lr

    def _choice_logits(self) -> list:
        return [block.choice_logits for block in self.supernet.choice_blocks()]

    @torch.no_grad()
    def _step_choices(self, logits: list) -> None:
        """Choice blocks' logits: one gradient step normalised over all of them (search phase only).

        RMSProp's per-parameter normalisation would move every logit at the same speed, so every block would
        switch its option at the same step; here the step keeps the gradients' proportions (the blocks whose
        options differ most in latency, or matter most to the loss, move first) and its root-mean-square size is
        ``schedule.thresholds.choice_lr`` x the approach speed. Stateless: a resumed run steps identically."""
        grads = [p.grad for p in logits]
        if self.phase == "search" and all(g is not None for g in grads):
            flat = torch.cat([g.flatten() for g in grads])
            rms = flat.pow(2).mean().sqrt()
            if rms > 0:
                speed = self.threshold_speed if self.optim.approach_band is not None else 1.0
                scale = self.optim.choice_lr * speed / rms
                for p, g in zip(logits, grads):
                    p.sub_(scale * g)
        for p in logits:
            p.grad = None

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None):
        # Clip the weights only (paper: clipping 10); RMSProp normalises the thresholds' gradient scale anyway.
        if self.optim.gradient_clip_val:
            params = [p for p in optimizer.param_groups[0]["params"] if p.grad is not None]
            if params:
                torch.nn.utils.clip_grad_norm_(params, self.optim.gradient_clip_val)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        self.store_bank()  # the bank in the supernet is saved with the others (its optimizer state: Lightning's too)
        banks = [bank.to_meta() for bank in self.banks]
        meta = {"phase": self.phase, "total_step": self.total_step, "thresholds_initialised": self.thresholds_initialised,
                "bank_index": self.bank_index, "banks": banks, "line_searches": banks[0]["line_searches"]}
        checkpoint["s3nas"] = meta

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        meta = checkpoint.get("s3nas") or {}
        self.thresholds_initialised = bool(meta.get("thresholds_initialised", False))
        banks = meta.get("banks")
        if banks is None:  # a checkpoint of one network (or a warm-up): its figures are the first bank's
            banks = [meta]
        if self.thresholds_initialised and len(banks) != len(self.banks):
            raise ConfigError(f"latency: the checkpoint searched {len(banks)} network(s), this run {len(self.banks)}; "
                              "resume with the targets it was started with, or use another hydra.run.dir")
        for bank, bank_meta in zip(self.banks, banks):
            bank.restore_meta(bank_meta)
        self.bank_index = int(meta.get("bank_index", 0)) if len(banks) == len(self.banks) else 0

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        with self.timings.part("line_search"):
            self._land_on_target()

    def _land_on_target(self) -> None:
        """Line search of the step that crossed the loss target (schedule.thresholds.line_search)."""
        before, self._before = self._before, None
        if before is None or self.phase != "search" or self._meets(before[0]):
            return
        after = self._scores()
        after_ms = self._latency_of(self._options_of_scores(after))
        if not self._meets(after_ms):
            return
        found = self._line_search(before[1], after)
        if found is not None:
            latency_ms, alpha, scores = found
            for sk, (kernel_x, channel_x) in zip(self.supernet.superkernels(), scores):
                sk.set_scores(kernel_x, channel_x)
            ladder = self._lay_ladder(scores)
            self.line_searches.append({"step": self.total_step, "from_ms": before[0][0], "past_ms": after_ms[0],
                                       "to_ms": latency_ms[0], "alpha": alpha, **({"ladder": ladder} if ladder else {})})

    @property
    def _measures_states(self) -> bool:
        """Whether this bank's latency is measured on a device near its target (``NearTargetLatency``): only there
        does the decode evaluate kept states other than the best one, so only there are they collected."""
        return any(hasattr(o.state_latency, "guard") for o in self.objectives)

    def _meets(self, latencies_ms: list[float]) -> bool:
        """Every objective of the current bank at or under its loss target."""
        return meets(self.objectives, latencies_ms, loss_target=True)

    # ---- search internals ----------------------------------------------------------------------
    def _scores(self) -> list:
        return [sk.scores() for sk in self.supernet.superkernels()]

    def _options_of_scores(self, scores: list) -> list:
        """Canonical option per block of the hard state given by ``scores``."""
        return [canonical(branches) for branches in self._raw_of_scores(scores)]

    def _raw_of_scores(self, scores: list) -> list:
        """Per block, the raw choice (as ``supernet.indicator_state``) of the hard state given by ``scores``."""
        it = iter(scores)
        raw = []
        for block in self.supernet.blocks:
            if getattr(block, "type", "") == "choice":  # not a nested chain: its current choice
                raw.append(block.raw_choice())
                continue
            branches = []
            for sk in block.superkernels():
                kernel_level, channel_level = sk.levels_of_scores(*next(it))
                branches.append(Branch(sk.kernels[kernel_level], block.expansion_levels(sk)[channel_level]))
            raw.append(tuple(branches))
        return raw

    def _latency_of(self, options) -> list[float]:
        """Latency of a hard state per objective: simulated when ``state_latency`` is set, else the table's sum."""
        return [o.of_options(options) for o in self.objectives]

    def _line_search(self, before: list, after: list) -> tuple[list[float], float, list] | None:
        """First state meeting every loss target on the segment before -> after (scores interpolated per indicator).

        The states along the segment change at each indicator's flip point; latency falls (almost) monotonically
        along it, so a binary search over the flip points finds the first state under the target with a few
        latency evaluations (simulations when ``state_latency`` is set).
        """
        alphas = set()
        for (kb, cb), (ka, ca) in zip(before, after):
            for xb, xa in ((kb, ka), (cb, ca)):
                flips = (xb > 0) != (xa > 0)
                if flips.any():
                    alphas.update(float(a) for a in (xb[flips] / (xb[flips] - xa[flips])).tolist())
        points = [min(1.0, a + 1e-6) for a in sorted(a for a in alphas if 0.0 <= a < 1.0)]  # just past each flip

        def state(alpha: float):
            scores = [(kb + alpha * (ka - kb), cb + alpha * (ca - cb)) for (kb, cb), (ka, ca) in zip(before, after)]
            raw = self._raw_of_scores(scores)
            latency_ms = self._latency_of([canonical(branches) for branches in raw])
            if self._measures_states:  # on a device, a state under the target the line search measured is kept
                self._track_feasible(latency_ms, raw)
            return latency_ms, scores

        lo, hi, best = 0, len(points) - 1, None
        while lo <= hi:  # first flip point whose state is under the target
            mid = (lo + hi) // 2
            latency_ms, scores = state(points[mid])
            if self._meets(latency_ms):
                best, hi = (latency_ms, points[mid], scores), mid - 1
            else:
                lo = mid + 1
        return best

    def _lay_ladder(self, scores: list) -> int:
        """On a measured device, where the decode may find the machine slower than the search did: from the state a
        line search landed on (its ``scores``), the states the search reaches next as its thresholds rise (every
        score lowered by the same amount: the indicators nearest to off flip first), one every LADDER_SPACING of the
        target by the table down to (1 - LADDER_DEPTH) x the target, are measured like the line search's states (at
        most LADDER_RUNGS; a band of closeness the bank already holds is not measured again, nor a ladder laid twice
        from landings within LADDER_SPACING) and offered to the bank: the ladder the decode walks down when the
        landing's evaluation is over the target. Returns how many networks it measured (0 where the latency is
        simulated: there the decode needs no ladder)."""
        objective = self.objectives[0]
        if not self._measures_states:
            return 0
        margins = sorted({float(v) for pair in scores for x in pair for v in x[x > 0].tolist()})

        def state(k: int) -> list:  # the state just past margin k's flip (k = -1: the landing)
            shift = margins[k] * (1 + 1e-6) + 1e-9 if k >= 0 else 0.0
            return self._raw_of_scores([(kernel_x - shift, channel_x - shift) for kernel_x, channel_x in scores])

        ratio = float(getattr(objective.state_latency, "ratio", 1.0))
        states: dict[int, tuple[list, float]] = {}  # k -> (raw state, table estimate x ratio)

        def estimate_ms(k: int) -> float:  # falls (never rises) with k: indicators only turn off
            if k not in states:
                raw = state(k)
                states[k] = raw, float(objective.table.estimate_ms([canonical(b) for b in raw])) * ratio
            return states[k][1]

        landing_ms = estimate_ms(-1)
        band = int(landing_ms / (LADDER_SPACING * objective.target_ms))
        if band in self.bank.ladders:  # a ladder from a landing this close is laid already
            return 0
        self.bank.ladders.add(band)
        floor_ms, step_ms = (1.0 - LADDER_DEPTH) * objective.target_ms, LADDER_SPACING * objective.target_ms
        measured_before, want_ms, lo = objective.state_latency.measured, landing_ms - step_ms, 0
        for _ in range(LADDER_RUNGS):
            if want_ms < floor_ms:
                break
            hi, found = len(margins) - 1, None
            while lo <= hi:  # the first state at or under want_ms (a binary search: the estimate is monotone)
                mid = (lo + hi) // 2
                if estimate_ms(mid) <= want_ms:
                    found, hi = mid, mid - 1
                else:
                    lo = mid + 1
            if found is None or estimate_ms(found) < floor_ms:
                break
            lo, want_ms = found + 1, estimate_ms(found) - step_ms
            if not self.bank.holds(estimate_ms(found) / objective.target_ms):  # not a latency the bank holds
                raw = states[found][0]
                self._track_feasible(self._latency_of([canonical(b) for b in raw]), raw)
        return int(objective.state_latency.measured - measured_before)

    def _track_feasible(self, latencies_ms: list[float], raw: list | None = None) -> None:
        """Keep the state meeting every target that uses most of them (one target: the largest latency under it), and
        a ladder of states under it (``Bank.candidates``). ``raw``: the state's raw choice (default: the supernet's)."""
        score = closeness(self.objectives, latencies_ms)
        if meets(self.objectives, latencies_ms, loss_target=False):
            offer = self.bank.offer if self.bank.wants(score) else None
        else:  # just over the target on a measured device: kept for a decode on a machine faster than the search saw
            offer = self.bank.offer_above if self._measures_states and self.bank.wants_above(score) else None
        if offer is not None:  # the hard state is read only when it would be kept
            offer(score, self.total_step, list(raw) if raw is not None else list(self.supernet.indicator_state()))

    def _start_thresholds(self) -> None:
        """First search step: threshold init (schedule.thresholds.init) and their RMSProp statistics."""
        if self.optim.threshold_init == "below_norm":
            init_thresholds_below_norms(self.supernet, self.optim.threshold_init_margin)
        optimizer = self.trainer.optimizers[0]
        if len(optimizer.param_groups) > 1:
            # this run's threshold settings (a warm-up checkpoint of another configuration may be resumed)
            o, weights, group = self.optim, optimizer.param_groups[0], optimizer.param_groups[1]
            group["lr"] = weights["lr"] * o.threshold_lr_scale
            group["initial_lr"] = weights.get("initial_lr", weights["lr"]) * o.threshold_lr_scale
            group["eps"] = o.threshold_eps if o.threshold_eps is not None else o.eps
            group["momentum"] = o.threshold_momentum if o.threshold_momentum is not None else o.momentum
        if self.optim.threshold_square_avg_init is not None:
            # Thresholds had no gradient in warm-up: start their RMSProp statistics explicitly, so the first
            # latency gradients are normalised instead of divided by RMSpropTF's sqrt(1).
            optimizer = self.trainer.optimizers[0]
            for p in optimizer.param_groups[1]["params"]:
                if not optimizer.state.get(p):
                    optimizer.state[p] = {"step": torch.tensor(0.0),
                                          "square_avg": torch.full_like(p, float(self.optim.threshold_square_avg_init)),
                                          "momentum_buffer": torch.zeros_like(p)}
        if len(self.banks) > 1:  # every target starts from the same thresholds
            params, optimizer = list(self.supernet.threshold_parameters()), self._optimizer()
            for bank in self.banks:
                bank.store(params, optimizer)
            self.bank_index = 0
        self.thresholds_initialised = True


@torch.no_grad()
def init_thresholds_below_norms(supernet: torch.nn.Module, margin: float) -> int:
    """Set every threshold to (its ring/slice weight norm - margin): all options stay on, but within reach."""
    count = 0
    for sk in supernet.superkernels():
        kernel_x, channel_x = sk.scores()
        sk.set_scores(torch.full_like(kernel_x, float(margin)), torch.full_like(channel_x, float(margin)))
        count += kernel_x.numel() + channel_x.numel()
    return count


class SearchInterrupted(RuntimeError):
    """Raised by ``InterruptAfter`` (fault injection: simulates a crash for resume tests)."""


class InterruptAfter(pl.Callback):
    """Raise ``SearchInterrupted`` once the global step reaches ``steps`` ($S3NAS_FAULT_INTERRUPT_AFTER_STEPS)."""

    def __init__(self, steps: int) -> None:
        self.steps = int(steps)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if pl_module.total_step >= self.steps:
            raise SearchInterrupted(f"interrupted after {pl_module.total_step} steps (S3NAS_FAULT_INTERRUPT_AFTER_STEPS)")
