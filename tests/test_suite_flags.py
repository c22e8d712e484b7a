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
