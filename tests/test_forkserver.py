"""The tests' fork server (tests/forkserver.py) runs a command as a fresh interpreter does: the same small
scripts run both ways, side by side, end the same and print the same."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import forkserver
import pytest

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the fork server runs on Linux only (forkserver.fresh)")

PROBE = """
import os, signal, sys, time, warnings
print("argv", sys.argv[1:], "main", __name__, "cwd", os.getcwd(), "probe", os.environ.get("VL_PROBE"))
print("script folder first on the path", sys.path[0] == os.path.dirname(os.path.abspath(__file__)))
print("to stderr", file=sys.stderr)
what = sys.argv[1]
if what == "exit":
    sys.exit(3)
if what == "message":
    sys.exit("error: a message")
if what == "raise":
    raise ValueError("boom")
if what == "sigint":
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(5)
if what == "sigkill":
    os.kill(os.getpid(), signal.SIGKILL)
if what == "newlines":
    print("a\\rb\\r\\nc")
if what == "warn":
    warnings.warn("careful")
"""


def both(cmd, cwd, env):
    """(the fresh interpreter's run, the forked one's). Both meet SIGINT as at a terminal: a shell's
    background job (`bash .ci/run &`) passes it on ignored, which forkserver.popen undoes the same way."""
    fresh = subprocess.run(
        cmd,
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    proc = forkserver.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = proc.communicate(timeout=60)
    return fresh, subprocess.CompletedProcess(cmd, proc.returncode, out, err)


@pytest.mark.parametrize("what", ["ok", "exit", "message", "raise", "sigint", "sigkill", "newlines", "warn"])
@pytest.mark.parametrize("warnings", [None, "ignore"])
def test_a_forked_command_ends_and_prints_as_a_fresh_interpreter(tmp_path, what, warnings):
    script = tmp_path / "probe.py"
    script.write_text(PROBE)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"} | {"VL_PROBE": "here"}
    if warnings:
        env["PYTHONWARNINGS"] = warnings
    fresh, forked = both([sys.executable, str(script), what], tmp_path, env)
    assert forked.returncode == fresh.returncode, (fresh, forked)
    assert forked.stdout == fresh.stdout, (fresh, forked)
    if what in ("raise", "sigint"):  # the traceback's frames differ (runpy's in the fork): its ends agree
        assert "Traceback (most recent call last)" in forked.stderr
        assert forked.stderr.splitlines()[-1] == fresh.stderr.splitlines()[-1], (fresh, forked)
    else:
        assert forked.stderr == fresh.stderr, (fresh, forked)
    assert {"sigint": -2, "sigkill": -9, "exit": 3, "message": 1, "raise": 1}.get(what, 0) == forked.returncode


def test_a_module_runs_as_python_dash_m_runs_it(tmp_path):
    (tmp_path / "data.json").write_text('{"b": 1, "a": [1, 2]}')
    cmd = [sys.executable, "-m", "json.tool", "--sort-keys", "data.json"]
    fresh, forked = both(cmd, tmp_path, dict(os.environ))
    assert (forked.returncode, forked.stdout, forked.stderr) == (fresh.returncode, fresh.stdout, fresh.stderr)
    assert forked.stdout.startswith('{\n    "a"')


def test_a_command_past_its_timeout_is_killed_and_the_timeout_raised(tmp_path):
    script = tmp_path / "sleep.py"
    script.write_text("import os, time\nprint(os.getpid(), flush=True)\ntime.sleep(60)\n")
    proc = forkserver.Popen([sys.executable, str(script)], cwd=tmp_path, stdout=subprocess.PIPE, text=True)
    pid = int(proc.stdout.readline())
    assert pid == proc.pid and proc.poll() is None
    with pytest.raises(subprocess.TimeoutExpired):
        proc.wait(timeout=0.5)
    proc.kill()
    assert proc.wait(timeout=30) == -9
    with pytest.raises(subprocess.TimeoutExpired):
        forkserver.run([sys.executable, str(script)], cwd=tmp_path, timeout=1, capture_output=True)
