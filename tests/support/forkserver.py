"""Real processes without the ~6 CPU-s of imports each: ``popen(["search.py", ...], cwd, env)``, ``run(...)``.

A subprocess ``python search.py ...`` spends most of a short test command in its imports (torch, Lightning,
torchmetrics -> torchvision -> torch._dynamo, scipy, timm, onnx: ~6 CPU-s on the 2-core CI machine). This module
runs such a command as a real process all the same (its own pid, real signals, a real exit status, stdout and
stderr through pipes as ``subprocess.Popen(..., stdout=PIPE, stderr=PIPE)`` has them), forked from a server that
imported those libraries once: one server per pytest process, started on first use, ending with it.

The forked child does what ``python <args>`` does after its start-up: ``sys.argv``, ``sys.path[0]`` (the
script's directory, or the working directory for ``-m``), the working directory and the whole environment of the
request; then it runs the script or module as ``__main__`` at the top level of this file, so the interpreter's
own exit does the rest (an uncaught exception's traceback and exit 1, ``SystemExit``'s code, atexit handlers,
non-daemon threads joined, streams flushed; an uncaught KeyboardInterrupt ends it by SIGINT).

What it is not: a fresh interpreter. Modules are imported before the request's environment applies, so a command
whose environment differs from the server's in a variable read at import or library load time (the config dir,
HOME, thread counts, ...: ``IMPORT_TIME_ENV``) is started as a plain subprocess instead, and tests about a
command's start-up itself (its imports, an installed copy, a changed HOME, page faults) use ``subprocess`` directly.
W&B runs fork too: W&B makes two temp dirs at import and deletes them when a run ends, so each command gets dirs of
its own (``_own_import_time_dirs``).
"""

from __future__ import annotations

import os
import sys

#: Environment variables read when a module is imported or a library is loaded (s3nas.config's CONF_DIR, OpenMP
#: and MKL thread pools, matplotlib's and W&B's dirs, the interpreter's own start-up); a request that differs from
#: the server in one of them runs as a fresh subprocess.
IMPORT_TIME_ENV = ("S3NAS_CONFIG_DIR", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "HOME",
                   "XDG_CACHE_HOME", "XDG_CONFIG_HOME", "MPLCONFIGDIR", "MPLBACKEND", "PYTHONPATH", "PYTHONHOME",
                   "PYTHONDONTWRITEBYTECODE", "PYTHONHASHSEED", "PYTHONWARNINGS", "PYTHONSAFEPATH", "PYTHONIOENCODING",
                   "LD_PRELOAD", "LD_LIBRARY_PATH", "CUDA_VISIBLE_DEVICES", "TORCH_HOME", "KMP_AFFINITY")
#: The server's own environment on top of the pytest process's: what the tests' commands run with (conftest.py's
#: ``run_cmd``, faults/test_signals.py), so that they can be forked.
SERVER_ENV = {"OMP_NUM_THREADS": "1"}
#: What the server imports before it forks (what search.py / train.py and the baselines import when they run).
#: Not onnxruntime (nor the s3nas modules importing it): its import starts a native thread, and a process forked
#: while another thread may hold a lock can hang; the server checks that it is still one thread.
PRELOAD = ("torch", "numpy", "pytorch_lightning", "torchmetrics", "torchvision", "timm", "scipy.signal",
           "scipy.stats", "onnx", "hydra", "omegaconf", "rich", "s3nas.config", "s3nas.data", "s3nas.runtime.trainer",
           "s3nas.search.app")


# ------------------------------------------------------------------------------------------------ server side
def _serve(sock_path: str):
    """Accept requests until stdin closes (the pytest process ended); return the request in a forked child."""
    import json
    import select
    import signal
    import socket

    # Ctrl-C as a fresh interpreter started by the test process has it (SIGINT at its default action there: see
    # conftest.py), whatever this server inherited; the forked commands inherit this handler
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for name in PRELOAD:
        try:
            __import__(name)
        except Exception:  # noqa: BLE001 - a module that fails to import fails in the command as it would
            pass
    import run_mode  # this file's directory is sys.path[0]
    import yaml_memo

    yaml_memo.install()  # as in the pytest process: a config text parsed once (yaml_memo.py)
    run_mode.install()  # and no composition only for the run mode (run_mode.py)
    threads = len(os.listdir("/proc/self/task"))
    if threads != 1:
        sys.stdout.write(f"{threads} threads after the imports: cannot fork safely\n")
        sys.stdout.flush()
        os._exit(1)
    import shutil
    import tempfile

    global _CHILD_DIRS
    _CHILD_DIRS = tempfile.mkdtemp(prefix="s3nas-forkserver-")  # <pid>/: a command's own import-time temp dirs
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind("\0" + sock_path)  # Linux's abstract namespace: no file to clean up
    listener.listen(16)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    children: dict[int, socket.socket] = {}
    while True:
        ready, _, _ = select.select([listener, sys.stdin], [], [], 0.02 if children else 1.0)
        while children:  # report every child that ended
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            shutil.rmtree(os.path.join(_CHILD_DIRS, str(pid)), ignore_errors=True)  # also after a SIGKILL
            conn = children.pop(pid, None)
            if conn is not None:
                code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
                try:
                    conn.sendall(f"exit {code}\n".encode())
                except OSError:
                    pass
                conn.close()
        if sys.stdin in ready and not os.read(sys.stdin.fileno(), 4096):
            for pid in children:  # the pytest process is gone: so are its commands
                try:
                    os.kill(pid, 9)
                except OSError:
                    pass
            import weakref

            for finalizer in list(weakref.finalize._registry):  # the imports' temp dirs (W&B's media, artifacts)
                finalizer()
            shutil.rmtree(_CHILD_DIRS, ignore_errors=True)
            os._exit(0)
        if listener not in ready:
            continue
        conn, _ = listener.accept()
        msg, fds, _, _ = socket.recv_fds(conn, 1 << 20, 3)
        request = json.loads(msg.decode())
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            listener.close()
            conn.close()
            for other in children.values():
                other.close()
            for target, fd in zip((0, 1, 2), fds):
                os.dup2(fd, target)
                os.close(fd)
            return request
        for fd in fds:
            os.close(fd)
        conn.sendall(f"pid {pid}\n".encode())
        children[pid] = conn


_KEEP: list = []
_CHILD_DIRS = ""


def _own_import_time_dirs() -> None:
    """W&B's temp dirs made at import (its media staging dir, its artifacts' dir), new for this command.

    The server imported W&B (timm does), so every command forked from it would share the server's two dirs, and W&B
    deletes them when a run ends (the media dir at the run's finish, the artifacts' dir at exit): the next command's
    W&B run would stage its tables into a deleted dir. Here the same objects name dirs of this command's own, under
    the server's ``<root>/<pid>/``, which the server removes when this process ends, however it ends."""
    own = os.path.join(_CHILD_DIRS, str(os.getpid()))
    private = sys.modules.get("wandb.sdk.data_types._private")
    artifact = sys.modules.get("wandb.sdk.artifacts.artifact")
    for holder, name in ((private, "MEDIA_TMP"), (getattr(artifact, "Artifact", None), "_TMP_DIR")):
        tmp = getattr(holder, name, None) if holder is not None else None
        if tmp is not None:
            tmp.name = os.path.join(own, name.lower().strip("_"))
            os.makedirs(tmp.name, exist_ok=True)


def _run_request(request: dict) -> None:
    import io
    import runpy

    import weakref

    # the server's own finalizers (e.g. the temp dirs W&B makes at import) are not this process's to run, at exit
    # or when their object is collected at shutdown: a first command ending would delete what the next ones share.
    # Detached here (the server runs them when it ends); the command's own finalizers run as usual
    for finalizer in list(weakref.finalize._registry):
        finalizer.detach()
    _own_import_time_dirs()
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    # stdout / stderr as a fresh interpreter has them on pipes (PYTHONUNBUFFERED from the request's environment)
    unbuffered = bool(os.environ.get("PYTHONUNBUFFERED"))
    _KEEP.extend((sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__))  # collected, they would close fds 1, 2
    for fd, name in ((1, "stdout"), (2, "stderr")):
        raw = io.FileIO(fd, "w", closefd=False)
        stream = io.TextIOWrapper(raw if unbuffered else io.BufferedWriter(raw), encoding="utf-8",
                                  errors="strict" if fd == 1 else "backslashreplace",
                                  line_buffering=False, write_through=unbuffered or fd == 2)
        setattr(sys, name, stream)
        setattr(sys, f"__{name}__", stream)
    args = request["args"]
    if args[0] == "-c":
        import types

        main = types.ModuleType("__main__")
        main.__builtins__ = __builtins__
        sys.modules["__main__"] = main
        sys.argv = ["-c", *args[2:]]
        sys.path[0] = ""
        exec(compile(args[1], "<string>", "exec"), main.__dict__)
    elif args[0] == "-m":
        sys.argv = [args[1], *args[2:]]
        sys.path[0] = os.getcwd()
        runpy.run_module(args[1], run_name="__main__", alter_sys=True)
    else:
        script = os.path.abspath(args[0])
        sys.argv = [args[0], *args[1:]]
        sys.path[0] = os.path.dirname(script)
        runpy.run_path(script, run_name="__main__")


# ------------------------------------------------------------------------------------------------ client side
class _Server:
    def __init__(self) -> None:
        import subprocess
        import uuid

        self.sock_path = f"s3nas-fork-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.env = {**os.environ, **SERVER_ENV}
        self.proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), self.sock_path],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=self.env, text=True)
        line = self.proc.stdout.readline()
        if line.strip() != "ready":
            raise RuntimeError(f"fork server did not start: {line!r}")

    def close(self) -> None:
        try:
            self.proc.stdin.close()
            self.proc.wait(timeout=30)
        except Exception:  # noqa: BLE001
            self.proc.kill()
            self.proc.wait()
        self.proc.stdout.close()


_SERVER: "_Server | None | bool" = None  # False: the server could not start (commands run as subprocesses)


def _server() -> "_Server | None":
    global _SERVER
    if _SERVER is None or (_SERVER and _SERVER.proc.poll() is not None):
        import atexit

        try:
            _SERVER = _Server()
        except RuntimeError:
            _SERVER = False
        else:
            atexit.register(_SERVER.close)
    return _SERVER or None


def can_fork(env: dict) -> bool:
    """Whether a command with this whole environment can be forked from the server (else: a subprocess)."""
    server = _server()
    return server is not None and all(env.get(key) == server.env.get(key) for key in IMPORT_TIME_ENV)


class ForkedProcess:
    """The part of ``subprocess.Popen`` the tests use, for a command forked from the server (stdout and stderr
    are pipes, text mode)."""

    def __init__(self, args, cwd, env: dict) -> None:
        import json
        import socket

        self.args = [sys.executable, *args]
        self.returncode = None
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        null = os.open(os.devnull, os.O_RDONLY)
        self._conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._conn.connect("\0" + _server().sock_path)
        request = {"args": [str(a) for a in args], "cwd": str(cwd), "env": dict(env)}
        socket.send_fds(self._conn, [json.dumps(request).encode()], [null, out_w, err_w])
        for fd in (null, out_w, err_w):
            os.close(fd)
        self.stdout = open(out_r, encoding="utf-8", errors="replace")
        self.stderr = open(err_r, encoding="utf-8", errors="replace")
        self._buffer = b""
        self.pid = int(self._line().split()[1])

    def _line(self, timeout=None):
        import select

        while b"\n" not in self._buffer:
            ready, _, _ = select.select([self._conn], [], [], timeout)
            if not ready:
                return None
            chunk = self._conn.recv(4096)
            if not chunk:
                raise RuntimeError("fork server went away")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line.decode()

    def poll(self):
        if self.returncode is None:
            line = self._line(timeout=0)
            if line is not None:
                self.returncode = int(line.split()[1])
                self._conn.close()
        return self.returncode

    def wait(self, timeout=None):
        import subprocess

        if self.returncode is None:
            line = self._line(timeout=timeout)
            if line is None:
                raise subprocess.TimeoutExpired(self.args, timeout)
            self.returncode = int(line.split()[1])
            self._conn.close()
        return self.returncode

    def send_signal(self, signum) -> None:
        if self.returncode is None:
            os.kill(self.pid, signum)

    def terminate(self) -> None:
        self.send_signal(15)

    def kill(self) -> None:
        self.send_signal(9)

    def communicate(self, timeout=None):
        """Read stdout and stderr to their end, then wait: (stdout, stderr) as text."""
        import subprocess
        import threading

        chunks = {"out": [], "err": []}

        def read(stream, key):
            chunks[key].append(stream.read())

        readers = [threading.Thread(target=read, args=(s, k), daemon=True)
                   for s, k in ((self.stdout, "out"), (self.stderr, "err"))]
        for reader in readers:
            reader.start()
        for reader in readers:
            reader.join(timeout)
            if reader.is_alive():
                raise subprocess.TimeoutExpired(self.args, timeout)
        self.stdout.close()
        self.stderr.close()
        self.wait(timeout)
        return "".join(chunks["out"]), "".join(chunks["err"])

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.returncode is None:
            self.kill()
            self.wait()
        for stream in (self.stdout, self.stderr):
            if not stream.closed:
                stream.close()


def popen(args, cwd, env: dict):
    """``python <args>`` as a real process (stdout/stderr pipes, text): forked from the server when ``env`` allows
    it (``can_fork``), else a plain ``subprocess.Popen``."""
    import subprocess

    if can_fork(env):
        return ForkedProcess(args, cwd, env)
    return subprocess.Popen([sys.executable, *map(str, args)], cwd=str(cwd), env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def run(args, cwd, env: dict, timeout=None):
    """``subprocess.run([python, *args], capture_output=True, text=True)`` through ``popen``."""
    import subprocess

    proc = popen(args, cwd, env)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


if __name__ == "__main__":
    _run_request(_serve(sys.argv[1]))
