"""Latency loss (paper Eq. 9), loss config, feasibility of a target."""

from __future__ import annotations

import math
import warnings

import pytest
import torch

from s3nas.config.loss_schema import LossConfig, check_loss
from s3nas.errors import ConfigError, InfeasibleTargetError
from s3nas.latency.backend import Feasibility, LatencyTargetWarning
from s3nas.latency.loss import latency_loss


def test_latency_loss_known_values():
    assert latency_loss(torch.tensor(3.0), 2.5).item() == pytest.approx(15 * math.log(51))
    assert latency_loss(torch.tensor(2.4), 2.5).item() == 0.0
    assert latency_loss(2.6, 2.5, lambda1=1.0, lambda2=10.0).item() == pytest.approx(math.log(2.0))


def test_latency_loss_gradient_only_above_target():
    lat = torch.tensor(2.75, requires_grad=True)
    latency_loss(lat, 2.5).backward()
    assert lat.grad.item() == pytest.approx(15 * 100 / (1 + 100 * 0.25))
    lat = torch.tensor(2.25, requires_grad=True)
    latency_loss(lat, 2.5).backward()
    assert lat.grad.item() == 0.0


def test_loss_config_defaults_and_checks():
    assert check_loss(LossConfig()) == {"name": "s3nas", "lambda1": 15.0, "lambda2": 100.0, "label_smoothing": 0.1}
    with pytest.raises(ConfigError, match="loss.lambda1"):
        check_loss({"lambda1": -1})
    with pytest.raises(ConfigError, match="loss.label_smoothing"):
        check_loss({"label_smoothing": 1.0})
    with pytest.raises(ConfigError, match="loss.lamda1"):
        check_loss({"lamda1": 1.0})


def check_target(target_ms, feasibility=Feasibility(fastest_ms=1.25, slowest_ms=4.5, hardware="npu")):
    feasibility.check(target_ms)


def test_target_below_min_is_infeasible_and_names_both_bounds():
    with pytest.raises(InfeasibleTargetError) as err:
        check_target(1.0)
    message = str(err.value)
    assert "latency" in message and "1.25" in message and "4.5" in message and "\n" not in message


def test_target_above_max_warns_and_feasible_target_is_silent():
    with pytest.warns(LatencyTargetWarning, match="inactive"):
        check_target(5.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_target(2.5)
        check_target(1.25)


def test_loss_configs_compose_and_the_schema_rejects_bad_values():
    from hydra.errors import ConfigCompositionException

    from s3nas.config import compose_config

    cfg = compose_config("search", [])
    assert check_loss(cfg.loss) == {"name": "s3nas", "lambda1": 15.0, "lambda2": 100.0, "label_smoothing": 0.1}
    assert check_loss(compose_config("search", ["loss=ce_only"]).loss)["lambda1"] == 0.0
    with pytest.raises(ConfigCompositionException):
        compose_config("search", ["loss.lambda1=fast"])  # typed by the loss_schema
    with pytest.raises(ConfigCompositionException):
        compose_config("search", ["loss.lamda1=1"])  # unknown key
