"""Fixtures shared by every test file.

- ``x64``: float64 for the duration of one test (gradient checks), restored after.
- ``check_grads64``: ``jax.test_util.check_grads(f, args, order=2)`` in float64,
  forward and reverse mode.
- ``strict_promotion``: jax's strict dtype promotion for one test, so an implicit
  int → float or float32 → float64 promotion fails loudly.
- ``on_cpu_devices``: runs a script in a fresh process with N CPU devices (the
  mesh tests) and returns the JSON it printed; ``start_on_cpu_devices``,
  ``wait_all`` and ``free_port`` start and join the processes of a
  multi-process (``jax.distributed``) test.
- ``compiles(fn)``: how many programs JAX compiled while ``fn()`` ran.
- ``seed`` / ``key``: the random seed and its ``jax.random.key``. The seed is 0
  unless ``--seed N`` (or the environment variable ``ANNJAX_TEST_SEED``) says
  otherwise, and a failing test that used it reports it, so a failure can be
  replayed with the same numbers.

Hypothesis runs under the profile ``annjax`` (50 examples, no deadline: the first
example of a property pays for a jit compilation); set ``HYPOTHESIS_PROFILE=ci``
for more examples.

The suite runs with a persistent compilation cache of its own, a temporary
folder removed at exit (``ANNJAX_CACHE_DIR``, set before annjax is
imported), so no test reads or fills the user's ``~/.cache/annjax``.

The suite compiles fast rather than well (:data:`FAST_COMPILE`, added to
``XLA_FLAGS`` for this process and every process it starts): its tests train
tiny models for a few steps, so XLA:CPU's compiling is most of their time.
XLA's loop emitters and LLVM at ``-O0`` cut that by about 60 % (measured on
test_steps_per_call, test_studies, test_vectorize, test_faults and
test_losses, ``-n 2``: 113 s with XLA's defaults, 46 s with these flags).
The programs compute the same functions; only their speed differs. Set
``ANNJAX_TEST_XLA_DEFAULTS=1`` to run the suite with XLA's own defaults.

A test marked ``xla_defaults`` runs in a child pytest process with XLA's
defaults (what users run) when the session has the flags: it compares two
different programs bit for bit (streamed against in-memory training), and
how XLA rounds a reduction depends on what it fused into it, which the
flags change (a last-bit difference in a gradient norm).
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator

import jax
import jax.monitoring
import numpy as np
import pytest
from hypothesis import settings
from jax.test_util import check_grads

settings.register_profile("annjax", max_examples=50, deadline=None)
settings.register_profile("ci", max_examples=300, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "annjax"))

_SEED_KEY = pytest.StashKey[int]()


#: XLA:CPU flags that make compiling cheap: the loop emitters instead of the
#: fusion emitters, LLVM at -O0 and without its expensive passes.
FAST_COMPILE = (
    "--xla_cpu_use_fusion_emitters=false",
    "--xla_backend_optimization_level=0",
    "--xla_llvm_disable_expensive_passes=true",
)


def pytest_configure(config: pytest.Config) -> None:
    """Gives the session a temporary compilation cache and, unless
    ``ANNJAX_TEST_XLA_DEFAULTS`` is set, :data:`FAST_COMPILE` (both before
    anything compiles: XLA reads its flags once per process)."""
    folder = tempfile.mkdtemp(prefix="annjax-test-xla-")
    os.environ["ANNJAX_CACHE_DIR"] = folder
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    if _fast_compile():
        os.environ["XLA_FLAGS"] = _with_flags(*FAST_COMPILE)


def _fast_compile() -> bool:
    return not os.environ.get("ANNJAX_TEST_XLA_DEFAULTS")


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """Runs an ``xla_defaults`` test in a child process with XLA's defaults
    when this session compiles with :data:`FAST_COMPILE`."""
    if pyfuncitem.get_closest_marker("xla_defaults") is None or not _fast_compile():
        return None
    import subprocess
    import sys

    env = dict(os.environ, ANNJAX_TEST_XLA_DEFAULTS="1")
    env["ANNJAX_TEST_SEED"] = str(pyfuncitem.config.getoption("--seed"))
    flags = [f for f in env.get("XLA_FLAGS", "").split() if f not in FAST_COMPILE]
    env["XLA_FLAGS"] = " ".join(flags)
    pytest_of = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    done = subprocess.run(
        [*pytest_of, pyfuncitem.nodeid],
        cwd=pyfuncitem.config.rootpath,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    return True


def _with_flags(*flags: str) -> str:
    """Returns ``XLA_FLAGS`` with ``flags`` added (a flag named twice: the
    new value)."""
    names = {f.split("=")[0] for f in flags}
    kept = [
        f
        for f in os.environ.get("XLA_FLAGS", "").split()
        if f.split("=")[0] not in names
    ]
    return " ".join([*kept, *flags])


#: The tests whose worker process died while running them (pytest-xdist).
_CRASHED: list[str] = []


@pytest.hookimpl(optionalhook=True)
def pytest_handlecrashitem(crashitem: str, report: pytest.TestReport, sched) -> bool:
    """Runs a test whose xdist worker died (a native crash, no Python error)
    once more on a fresh worker; a second crash fails it.

    XLA:CPU (jaxlib 0.10.2) has crashed here about once in four to five
    full runs, each time inside ``backend_compile_and_load`` compiling a
    different program, under XLA's default flags as under the suite's; the
    same test then passed. The terminal summary names every such test.
    """
    if crashitem in _CRASHED:
        return False
    _CRASHED.append(crashitem)
    sched.mark_test_pending(crashitem)
    report.outcome = "rerun"
    return True


def pytest_terminal_summary(terminalreporter) -> None:
    if _CRASHED:
        terminalreporter.section("tests whose worker process crashed")
        for nodeid in _CRASHED:
            terminalreporter.line(
                f"{nodeid}: its worker died; run again (result above)"
            )


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--seed",
        type=int,
        default=int(os.environ.get("ANNJAX_TEST_SEED", "0")),
        help="seed of the `key` fixture (default 0, or $ANNJAX_TEST_SEED)",
    )


def pytest_report_header(config: pytest.Config) -> str:
    return f"annjax: key fixture seed = {config.getoption('--seed')}"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    if report.failed and _SEED_KEY in item.stash:
        seed = item.stash[_SEED_KEY]
        report.sections.append(
            ("seed", f"key = jax.random.key({seed}); rerun with --seed {seed}")
        )
    return report


@pytest.fixture
def seed(request: pytest.FixtureRequest) -> int:
    """The seed of this test's randomness, reported if the test fails."""
    value = request.config.getoption("--seed")
    request.node.stash[_SEED_KEY] = value
    return value


@pytest.fixture
def key(seed: int) -> jax.Array:
    """A fresh ``jax.random.key(seed)``."""
    return jax.random.key(seed)


@pytest.fixture
def x64() -> Iterator[None]:
    """Enables float64 inside the test only."""
    with jax.enable_x64(True):
        yield


@pytest.fixture
def strict_promotion() -> Iterator[None]:
    """Runs the test under jax's strict dtype promotion."""
    with jax.numpy_dtype_promotion("strict"):
        yield


@pytest.fixture
def check_grads64(x64: None) -> Callable[..., None]:
    """Returns ``check(f, args, **kw)``: ``check_grads(f, args, order=2)`` in float64.

    Arguments are converted to float64 first. The check runs with jit disabled:
    its many derivative functions then run primitive by primitive, and those
    compile once for the whole session instead of once per derivative and per
    test (3x faster); the jitted path is covered by the tests that compare
    jitted and plain calls.
    """

    def check(f: Callable, args: tuple, **kwargs) -> None:
        args = tuple(jax.numpy.asarray(a, jax.numpy.float64) for a in args)
        with jax.disable_jit():
            check_grads(f, args, order=2, modes=("fwd", "rev"), **kwargs)

    return check


def cpu_devices_env(devices: int) -> dict[str, str]:
    """Returns this process's environment for a child that sees ``devices`` CPU
    devices (``--xla_force_host_platform_device_count``) and this checkout's
    annjax."""
    from pathlib import Path

    env = dict(os.environ)
    env["XLA_FLAGS"] = _with_flags(f"--xla_force_host_platform_device_count={devices}")
    env["JAX_PLATFORMS"] = "cpu"
    root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join([root, env.get("PYTHONPATH", "")])
    return env


def on_cpu_devices(args: list[str], devices: int = 8, timeout: float = 600) -> dict:
    """Returns the JSON that ``python *args`` printed on its last ``RESULT `` line,
    run in a fresh process that sees ``devices`` CPU devices (a mesh on one
    machine); the process's stderr tail is the failure message."""
    import json
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, *args],
        env=cpu_devices_env(devices),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")]
    assert done.returncode == 0 and lines, done.stderr[-4000:]
    return json.loads(lines[-1].removeprefix("RESULT "))


def start_on_cpu_devices(args: list[str], devices: int):
    """Returns the started ``python *args`` (a ``subprocess.Popen``, output
    piped) seeing ``devices`` CPU devices: one process of a multi-process run."""
    import subprocess
    import sys

    return subprocess.Popen(
        [sys.executable, *args],
        env=cpu_devices_env(devices),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait_all(procs: list, timeout: float) -> None:
    """Waits for every process, asserting each exits 0 (its output's tail is
    the message); kills them all when one fails or ``timeout`` s pass."""
    import time

    deadline = time.monotonic() + timeout
    try:
        for p in procs:
            output, _ = p.communicate(timeout=max(1.0, deadline - time.monotonic()))
            assert p.returncode == 0, output[-4000:]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()


def data_mesh_of_two_hosts(role: str, port: str, pid: str):
    """Returns the 4-device ``("data",)`` mesh of a two-process test's worker:
    as process ``pid`` of two joined over gloo at ``127.0.0.1:port`` (``role``
    "host", 2 devices each), or alone with 4 devices (any other role)."""
    from jax.sharding import Mesh

    if role == "host":
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(
            f"127.0.0.1:{port}", num_processes=2, process_id=int(pid)
        )
    mesh = Mesh(np.array(jax.devices()), ("data",))
    assert mesh.devices.size == 4, mesh
    return mesh


def free_port() -> int:
    """Returns a TCP port free on 127.0.0.1 now (a coordinator's address)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def compiles(fn: Callable[[], object]) -> int:
    """Returns how many programs JAX handed to the backend while ``fn()`` ran."""
    seen = []

    def listen(event: str, duration: float, **kwargs) -> None:
        if event == "/jax/core/compile/backend_compile_duration":
            seen.append(duration)

    jax.monitoring.register_event_duration_secs_listener(listen)
    try:
        fn()
    finally:
        jax.monitoring.unregister_event_duration_listener(listen)
    return len(seen)


def tiny_split(shape: tuple = (4,)):
    """Returns ``((x, y), (x_val, y_val))``: 32 + 8 examples of ``shape``
    (standard normal, seed 0) with labels in {0, 1, 2}: the small data of
    the sweep and vectorisation tests."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, *shape)).astype(np.float32)
    y = rng.integers(0, 3, 40).astype(np.int32)
    return (x[:32], y[:32]), (x[32:], y[32:])


def separable_classes():
    """Returns ``(x, y)``: 100 examples of 5 features shifted by their label
    in {0, 1, 2} (seed 1): three classes a small MLP learns in a few epochs."""
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 100).astype(np.int32)
    x = (rng.normal(size=(100, 5)) + y[:, None]).astype(np.float32)
    return x, y


class Started(Exception):
    """Raised when fit got past its checks into training."""


@pytest.fixture
def no_training(monkeypatch):
    """Makes any epoch fail the test: the error must come before compiling."""
    from annjax.training import loop

    def forbidden(*args, **kwargs):
        raise Started("fit reached training before rejecting its input")

    monkeypatch.setattr(loop, "run_epoch", forbidden)
