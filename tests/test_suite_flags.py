"""The suite's XLA flags (tests/conftest.py): set for this process and handed
to the processes that tests start, merged with the flags already given."""

from __future__ import annotations

import os

import pytest
from conftest import FAST_COMPILE, _fast_compile, _with_flags, cpu_devices_env


@pytest.mark.skipif(not _fast_compile(), reason="ANNJAX_TEST_XLA_DEFAULTS is set")
def test_the_session_and_its_subprocesses_compile_with_the_fast_flags():
    given = os.environ["XLA_FLAGS"].split()
    assert set(FAST_COMPILE) <= set(given)
    child = cpu_devices_env(4)["XLA_FLAGS"].split()
    assert set(FAST_COMPILE) <= set(child)
    assert "--xla_force_host_platform_device_count=4" in child


def test_a_flag_given_again_takes_the_new_value(monkeypatch):
    monkeypatch.setenv("XLA_FLAGS", "--a=1 --b=2")
    assert _with_flags("--b=3", "--c").split() == ["--a=1", "--b=3", "--c"]


def test_a_test_whose_worker_crashes_runs_again_once(tmp_path):
    # conftest's pytest_handlecrashitem: a native crash (XLA:CPU's rare one)
    # reschedules the test on a fresh worker once; a second crash fails it
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    here = Path(__file__).parent
    shutil.copy(here / "conftest.py", tmp_path / "conftest.py")
    marker = tmp_path / "crashed"
    (tmp_path / "test_crash.py").write_text(
        "import os, signal\n"
        "def test_crashes_once():\n"
        f"    if not os.path.exists({str(marker)!r}):\n"
        f"        open({str(marker)!r}, 'w').close()\n"
        "        os.kill(os.getpid(), signal.SIGSEGV)\n"
        "def test_crashes_always():\n"
        "    os.kill(os.getpid(), signal.SIGSEGV)\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-n", "2", "-q", "-p", "no:cacheprovider"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    out = done.stdout
    assert done.returncode == 1, out[-3000:]
    assert "1 failed, 1 passed, 2 rerun" in out, out[-3000:]
    assert "FAILED test_crash.py::test_crashes_always" in out
    assert "test_crash.py::test_crashes_once: its worker died" in out
