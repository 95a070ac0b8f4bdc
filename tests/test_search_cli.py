"""Bad input to `python search.py`: one line naming the problem, exit 2, no traceback, no run dir left behind.

Every case runs the command line in the test process (tests/support/inprocess.py: stdout, stderr and the exit
code of ``sys.exit`` captured); one case of each kind of failure (a composition error, a value the checks
refuse, a file the checks cannot read) also runs as a real process, all of those at once (module fixture), so
the exit status and the stderr of a real ``python search.py`` are checked too.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from inprocess import run_inprocess

REPO = Path(__file__).resolve().parents[1]

CASES = {
    "bad_latency": (["latency=fast"], "latency"),
    "negative_latency": (["latency=-3ms"], "latency"),
    "unknown_hardware_name": (["hardware.name=tpu9000"], "hardware"),
    "unknown_hardware_group": (["hardware=tpu9000"], "hardware"),
    "missing_data_root": (["data=imagenet", "data.root=/nonexistent/imagenet"], "/nonexistent/imagenet"),
    "corrupt_ckpt_path": (["ckpt_path={corrupt}"], "ckpt_path"),
    "missing_ckpt_path": (["ckpt_path=/nonexistent/last.ckpt"], "ckpt_path"),
    "unreachable_target": (["latency=0.01ms"], "0.01"),
    "nan_lambda1": (["loss.lambda1=nan"], "loss.lambda1"),
    "negative_lambda1": (["loss.lambda1=-5"], "loss.lambda1"),
    "zero_lambda2": (["loss.lambda2=0"], "loss.lambda2"),
    "negative_warmup": (["schedule.warmup_epochs=-1"], "schedule.warmup_epochs"),
    "zero_batch": (["data.batch_size=0"], "data.batch_size"),
    "negative_batch": (["data.batch_size=-1"], "data.batch_size"),
    "trainer_max_epochs": (["trainer.max_epochs=5"], "schedule.warmup_epochs"),
    "trainer_clip": (["trainer.gradient_clip_val=1"], "schedule.gradient_clip_val"),
    "unknown_key": (["schedule.nope=1"], "nope"),
    "bad_decode": (["schedule.decode=best"], "schedule.decode"),
    "tiny_memories": (["hardware.profile={tiny}"], "wmem_bytes"),
    "bad_profile_field": (["hardware.profile={badfield}"], "hardware.profile"),
}
#: the cases that also run as real processes: an unknown key (composition), a value the checks refuse, a file
#: the checks cannot read
IN_A_PROCESS = ("unknown_key", "bad_latency", "corrupt_ckpt_path")


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    base = tmp_path_factory.mktemp("search_cli")
    corrupt = base / "corrupt.ckpt"
    corrupt.write_bytes(b"\x80\x02truncated pickle")
    midap = (REPO / "simulator" / "profiles" / "midap.yaml").read_text()
    tiny = base / "tiny.yaml"  # on-chip weight memory of 2 bytes: the simulator refuses, the search says so
    tiny.write_text("\n".join("wmem_bytes: 2" if line.startswith("wmem_bytes:") else line
                              for line in midap.splitlines()) + "\n")
    badfield = base / "badfield.yaml"
    badfield.write_text("clock_hz: -5\n")
    env = dict(os.environ, WANDB_MODE="disabled", OMP_NUM_THREADS="1", HYDRA_FULL_ERROR="0")
    env.pop("HYDRA_FULL_ERROR")

    def command(name: str, run_dir: Path) -> list[str]:
        args = [a.format(corrupt=corrupt, tiny=tiny, badfield=badfield) for a in CASES[name][0]]
        return ["search.py", *args, "logger=none", f"hydra.run.dir={run_dir}"]

    procs = {}
    for name in IN_A_PROCESS:
        run_dir = base / "process" / name
        procs[name] = (subprocess.Popen([sys.executable, *command(name, run_dir)], cwd=REPO, env=env,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True), run_dir)
    out = {}
    for name in CASES:
        run_dir = base / name
        proc = run_inprocess(command(name, run_dir), env={"WANDB_MODE": "disabled"}, check=False)
        out[name] = [(proc.returncode, proc.stdout, proc.stderr, run_dir)]
    for name, (proc, run_dir) in procs.items():
        stdout, stderr = proc.communicate(timeout=600)
        out[name].append((proc.returncode, stdout, stderr, run_dir))
    return out


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_stops_with_one_line(results, case):
    assert len(results[case]) == (2 if case in IN_A_PROCESS else 1)
    for returncode, stdout, stderr, run_dir in results[case]:  # in the test process [and as a real process]
        expected = CASES[case][1]
        assert returncode == 2, f"{case}: exit {returncode}\n{stdout[-2000:]}\n{stderr[-2000:]}"
        assert "Traceback" not in stderr and "Traceback" not in stdout, stderr[-3000:]
        error_lines = [line for line in stderr.splitlines() if line.startswith("error:")]
        assert len(error_lines) == 1, stderr[-3000:]
        assert expected in error_lines[0], error_lines[0]
        assert not run_dir.exists(), sorted(p.name for p in run_dir.rglob("*"))  # no run dir left behind
        assert "config_resolved" not in stdout and "schedule" not in stdout  # failed before the config tree
