"""`python -m s3nas.train.export_app run_dir=<train.py run dir> [input_size=224] [output=...] [opset=18] [atol=1e-4]`.

Exports the trained (EMA) network of a train.py run to ONNX (``<run_dir>/model.onnx`` by default), checks
onnxruntime against torch on random input and on real test images of the run's dataset, and prints one
JSON line with the result. ``key=value`` arguments like every other s3nas command; bad input prints one
``error:`` line and exits 2, and nothing is written unless the check passes.
"""

from __future__ import annotations

import json
import sys
from typing import Any, Optional, Sequence

from s3nas.errors import ConfigError, UserError

#: key -> (type, default); run_dir is required.
OPTIONS: dict[str, tuple[Any, Any]] = {
    "run_dir": (str, None),
    "output": (str, None),
    "weights": (str, None),
    "input_size": (int, None),
    "opset": (int, 18),
    "dynamic_batch": (bool, True),
    "check": (bool, True),
    "atol": (float, 1e-4),
}


def parse_args(argv: Sequence[str]) -> dict:
    """``key=value`` arguments -> typed dict; ConfigError naming the key and the accepted keys."""
    values = {key: default for key, (_, default) in OPTIONS.items()}
    for arg in argv:
        key, sep, text = arg.partition("=")
        key = key.lstrip("+")
        if not sep or key not in OPTIONS:
            raise ConfigError(f"{arg!r}: expected key=value with key one of {', '.join(OPTIONS)}")
        kind = OPTIONS[key][0]
        try:
            if text.lower() in ("null", "none", ""):
                values[key] = None
            elif kind is bool:
                if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError(text)
                values[key] = text.lower() in ("true", "1", "yes")
            else:
                values[key] = kind(text)
        except ValueError:
            raise ConfigError(f"{key}: {text!r} is not a {kind.__name__}") from None
    if not values["run_dir"]:
        raise ConfigError("run_dir: not set; usage: python -m s3nas.train.export_app run_dir=<train.py run dir> "
                          "[input_size=N] [output=model.onnx]")
    if values["input_size"] is not None and values["input_size"] < 1:
        raise ConfigError(f"input_size: must be a positive integer, got {values['input_size']}")
    return values


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Command line entry; returns the exit status."""
    from s3nas.utils.entry import print_error

    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = parse_args(argv)
        from s3nas.train.export import export_run_dir

        result = export_run_dir(args["run_dir"], output=args["output"], input_size=args["input_size"],
                                opset=int(args["opset"] or 18), dynamic_batch=bool(args["dynamic_batch"]),
                                check=bool(args["check"]), atol=float(args["atol"] or 1e-4), weights=args["weights"])
    except UserError as error:
        print_error(str(error))
        return int(getattr(error, "exit_code", 2))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
