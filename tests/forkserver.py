"""The commands the tests run (`python train.py ...`, predict.py, the benchmarks, `python -m ...`) without
paying the imports each time.

A fresh `python train.py` spends about 8 s of CPU importing torch, Lightning, torchmetrics (which pulls
in torchvision and scipy) and the rest before it reads its first argument; the suite runs such commands
about a hundred times. The fork server imports them once per pytest worker, then forks a child per
command. The child is a process of its own, as subprocess would start it: the command's argv, working
folder and whole environment, its stdin/stdout/stderr as the test gives them (pipes, files, a terminal:
the descriptors are passed over the server's socket); it runs the script as `__main__` (runpy, as
`python script.py` and `python -m module` do) and exits with the script's code, or dies of the signal
that ends it (SIGINT included: an uncaught KeyboardInterrupt ends it as the interpreter does). Only its
parent differs: a manager process forked for the command waits for it and reports how it ended.
helpers.run_cli/run_user use `run`; tests that watch a running command use `popen` (subprocess's
signatures, both).

What a fork does not give and a fresh interpreter does: a clean sys.modules (a test about what a
command imports starts its own process, as tests/test_startup.py and test_ux's import checks do) and
the options read only when an interpreter starts (-X, PYTHONPATH, PYTHONHASHSEED; PYTHONWARNINGS is
applied in the child). VISIONLAB_TESTS_FRESH=1 runs every command in a fresh interpreter instead, as
every platform but Linux does. tests/test_forkserver.py runs the same scripts both ways side by side.

    python tests/forkserver.py SOCKET     (started by ForkServer, never by hand)
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# What every training, prediction and export command imports: once per worker instead of per command.
PRELOAD = ("visionlab.commands.train", "visionlab.commands.predict", "visionlab.commands.export", "timm")


# ----------------------------------------------------------------------------- the client (in the test)
class ForkServer:
    """One server per pytest worker, started on first use."""

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="visionlab-forkserver-"))
        self.address = str(self.folder / "socket")
        env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
        env.pop("PYTHONWARNINGS", None)  # each command's own environment says
        self.process = subprocess.Popen(
            [sys.executable, __file__, self.address],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
            text=True,
        )
        ready = self.process.stdout.readline()
        if ready.strip() != "ready":
            raise RuntimeError(f"the tests' fork server did not start (exit {self.process.poll()})")

    def close(self) -> None:
        import shutil

        self.process.kill()
        self.process.wait()
        shutil.rmtree(self.folder, ignore_errors=True)


class Popen:
    """A command forked from this worker's server, with the part of subprocess.Popen's surface the tests
    use: stdin/stdout/stderr as None, PIPE, DEVNULL, STDOUT (stderr), a file or a descriptor; text;
    pid, returncode, poll, wait, communicate, send_signal, kill, terminate."""

    def __init__(self, cmd, cwd=None, env=None, stdin=None, stdout=None, stderr=None, text=False):
        self.args = cmd
        self.returncode = None
        self.stdout = self.stderr = None
        self._received = b""
        child_fds, ours = [], []  # the child's 0, 1, 2; what to close here once they are sent

        def child_end(spec, fd: int, write: bool):
            if spec is None:
                return fd
            if spec == subprocess.DEVNULL:
                ours.append(os.open(os.devnull, os.O_WRONLY if write else os.O_RDONLY))
                return ours[-1]
            if spec == subprocess.PIPE:
                read, written = os.pipe()
                ours.append(written if write else read)
                mode = ("r" if text else "rb") if write else ("w" if text else "wb")
                stream = os.fdopen(read if write else written, mode, encoding=_encoding() if text else None)
                setattr(self, "stdout" if fd == 1 else "stderr", stream)
                return ours[-1]
            return spec if isinstance(spec, int) else spec.fileno()

        child_fds.append(child_end(stdin, 0, write=False))
        child_fds.append(child_end(stdout, 1, write=True))
        child_fds.append(child_fds[1] if stderr == subprocess.STDOUT else child_end(stderr, 2, write=True))
        request = json.dumps(
            {"argv": [str(a) for a in cmd[1:]], "cwd": str(cwd or os.getcwd()), "env": dict(env or os.environ)}
        ).encode()
        self._conn = socket.socket(socket.AF_UNIX)
        try:
            self._conn.connect(_running_server().address)
            socket.send_fds(self._conn, [b"%08d" % len(request)], child_fds)
            self._conn.sendall(request)
        finally:
            for fd in ours:
                os.close(fd)
        self.pid = json.loads(self._line(None))["pid"]

    def _line(self, timeout: float | None) -> bytes | None:
        """The manager's next line; None when none came within `timeout` (0: do not wait)."""
        self._conn.settimeout(timeout)
        while b"\n" not in self._received:
            try:
                chunk = self._conn.recv(4096)
            except (TimeoutError, BlockingIOError):
                return None
            if not chunk:
                raise RuntimeError(f"the tests' fork server lost the command {self.args}")
            self._received += chunk
        line, self._received = self._received.split(b"\n", 1)
        return line

    def poll(self) -> int | None:
        if self.returncode is None:
            line = self._line(0)
            if line is not None:
                self.returncode = json.loads(line)["returncode"]
                self._conn.close()
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            line = self._line(timeout)
            if line is None:
                raise subprocess.TimeoutExpired(self.args, timeout)
            self.returncode = json.loads(line)["returncode"]
            self._conn.close()
        return self.returncode

    def communicate(self, timeout: float | None = None):
        """Reads stdout and stderr (those that are pipes) to their ends, then waits."""
        import threading

        results = {}

        def drain(name):
            stream = getattr(self, name)
            results[name] = stream.read()
            stream.close()

        readers = [
            threading.Thread(target=drain, args=(n,), daemon=True) for n in ("stdout", "stderr") if getattr(self, n)
        ]
        for reader in readers:
            reader.start()
        deadline = None if timeout is None else time.monotonic() + timeout
        for reader in readers:
            reader.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
            if reader.is_alive():
                raise subprocess.TimeoutExpired(self.args, timeout)
        self.wait(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return results.get("stdout"), results.get("stderr")

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)


def _encoding() -> str:
    import locale

    return locale.getpreferredencoding(False)


_server: ForkServer | None = None


def _running_server() -> ForkServer:
    """This worker's server: started on first use (and again should it have died), closed at exit."""
    global _server
    if _server is None or _server.process.poll() is not None:
        import atexit

        _server = ForkServer()
        atexit.register(_server.close)
    return _server


def fresh() -> bool:
    """Fresh interpreters when asked, and off Linux (no fork on Windows; macOS's system frameworks are not
    safe to use in a child forked after they were loaded)."""
    return os.environ.get("VISIONLAB_TESTS_FRESH") == "1" or sys.platform != "linux"


def popen(cmd, **kwargs):
    """subprocess.Popen(cmd, **kwargs), forked from this worker's server (a fresh interpreter with
    VISIONLAB_TESTS_FRESH=1). `cmd` is [sys.executable, script, *args] or [sys.executable, "-m", module, *args].
    Either way SIGINT raises KeyboardInterrupt in the command, as at a terminal (a shell's background job,
    `.ci/run &`, would pass it on ignored)."""
    if fresh():
        if os.name == "posix":
            kwargs["preexec_fn"] = lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)
        return subprocess.Popen(cmd, **kwargs)
    return Popen(cmd, **kwargs)


def run(cmd, *, cwd=None, env=None, timeout=None, capture_output=False, text=False, check=False):
    """subprocess.run with these arguments, the command forked (a fresh interpreter with VISIONLAB_TESTS_FRESH=1)."""
    if fresh():
        return subprocess.run(
            cmd, cwd=cwd, env=env, timeout=timeout, capture_output=capture_output, text=text, check=check
        )
    pipe = subprocess.PIPE if capture_output else None
    proc = Popen(cmd, cwd=cwd, env=env, stdout=pipe, stderr=pipe, text=text)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()  # as subprocess.run: kill it, wait for it, raise
        proc.wait()
        raise
    if check and proc.returncode:
        raise subprocess.CalledProcessError(proc.returncode, cmd, stdout, stderr)
    return subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)


# ----------------------------------------------------------------------------- the server
def serve(address: str) -> None:
    import gc
    import importlib
    import warnings

    start_filters = list(warnings.filters)  # a fresh interpreter's, before any import adds its own
    for name in PRELOAD:
        importlib.import_module(name)
    gc.collect()
    gc.freeze()  # the preloaded objects stay out of every child's collections: their pages stay shared
    parent = os.getppid()
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the managers are reaped without a wait
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(address)
        listener.listen(8)
        listener.settimeout(5)
        print("ready", flush=True)
        while os.getppid() == parent:  # ends with the pytest worker that started it
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            if os.fork() == 0:
                listener.close()
                _manage(conn, start_filters)
            conn.close()


def _manage(conn: socket.socket, start_filters: list) -> None:
    """In the manager: fork the command, say its pid, wait for it, say how it ended; never returns."""
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    try:
        header, fds, _, _ = socket.recv_fds(conn, 8, 3)
        while len(header) < 8:
            header += conn.recv(8 - len(header))
        size, payload = int(header), b""
        while len(payload) < size:
            payload += conn.recv(size - len(payload))
        request = json.loads(payload)
        pid = os.fork()
        if pid == 0:
            conn.close()
            _command(request, fds, start_filters)
        for fd in fds:
            os.close(fd)
        conn.sendall(json.dumps({"pid": pid}).encode() + b"\n")
        _, status = os.waitpid(pid, 0)
        conn.sendall(json.dumps({"returncode": os.waitstatus_to_exitcode(status)}).encode() + b"\n")
    finally:
        os._exit(0)


def _command(request: dict, fds: list[int], start_filters: list) -> None:
    """In the child: become the command, run it, exit as the interpreter would; never returns."""
    import runpy
    import traceback
    import warnings

    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD):
        signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for fd, given in enumerate(fds):
        os.dup2(given, fd)
    for given in set(fds) - {0, 1, 2}:
        os.close(given)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    # A fresh interpreter's filters: its defaults, PYTHONWARNINGS's in front of them, and in front of
    # those the ones the imported packages add (the server's, which those imports put at the front).
    added = warnings.filters[: len(warnings.filters) - len(start_filters)]
    if warnings.filters[len(added) :] != start_filters:  # a package appended one: keep all, ours in front
        added, start_filters = [], list(warnings.filters)
    warnings.filters[:] = start_filters
    for option in filter(None, os.environ.get("PYTHONWARNINGS", "").split(",")):
        warnings._setoption(option)
    warnings.filters[:0] = added
    warnings._filters_mutated()
    _reseed()

    argv = request["argv"]
    code = 0
    try:
        if argv[0] == "-m":
            sys.argv = [argv[1], *argv[2:]]
            sys.path[0] = os.getcwd()
            runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
        else:
            sys.argv = list(argv)
            sys.path[0] = os.path.dirname(os.path.abspath(argv[0]))
            runpy.run_path(argv[0], run_name="__main__")
    except SystemExit as exc:
        code = _exit_code(exc.code)
    except KeyboardInterrupt:
        traceback.print_exc()
        code = -signal.SIGINT
    except BaseException:
        traceback.print_exc()
        code = 1
    _exit(code)


def _exit_code(code) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


def _reseed() -> None:
    """A fresh process draws fresh seeds; a fork copies the server's generators (random reseeds itself)."""
    import numpy as np
    import torch

    np.random.seed()
    torch.seed()


def _exit(code: int) -> None:
    """The interpreter's shutdown: wait for non-daemon threads, run atexit handlers, flush; then exit with
    `code`, or die of SIGINT as an interpreter does on an uncaught KeyboardInterrupt."""
    import atexit
    import threading

    try:
        threading._shutdown()
        atexit._run_exitfuncs()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
    if code == -signal.SIGINT:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(1)
    os._exit(code)


if __name__ == "__main__":
    serve(sys.argv[1])
