"""The documentation site renders in a browser: the API reference and a guide page,
opened in headless Chromium, show their title, a function signature and formulas
typeset by MathJax (its output elements in the DOM), and screenshots are saved.

The site is built here, into a temporary folder, from this checkout's ``docs/``
with warnings as errors and nitpicky references, the guide's code cells not
executed (``nb_execution_mode=off``: what is checked here is the rendering;
``.ci/run`` builds the whole site, cells executed, after the tests). Skipped, with
the reason, without Chromium (Debian: ``apt-get install chromium``) or without the
``docs`` extra (``pip install -e ".[docs]"``).
"""

from __future__ import annotations

import importlib.util
import os
import pathlib
import re
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
SHOTS = ROOT / "docs" / "_build" / "screenshots"

CHROMIUM = next(
    (p for p in map(shutil.which, ("chromium", "chromium-browser")) if p), None
)
MISSING = [
    m for m in ("sphinx", "myst_nb", "furo") if importlib.util.find_spec(m) is None
]

pytestmark = [
    pytest.mark.skipif(
        CHROMIUM is None,
        reason="no Chromium to open the site (Debian: apt-get install chromium)",
    ),
    pytest.mark.skipif(
        bool(MISSING),
        reason=f"the docs extra is not installed ({', '.join(MISSING)}): "
        'pip install -e ".[docs]"',
    ),
]


@pytest.fixture
def site(tmp_path_factory) -> pathlib.Path:
    out = tmp_path_factory.mktemp("site")
    build = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-n", "-q"]
    build += ["-b", "html", "-D", "nb_execution_mode=off", "-d", str(out / ".doctrees")]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [*build, str(ROOT / "docs"), str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert done.returncode == 0, f"sphinx-build failed:\n{done.stdout}\n{done.stderr}"
    return out


def chromium(*args: str) -> str:
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu"]
    command += ["--disable-dev-shm-usage", "--virtual-time-budget=20000", *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def rendered(page: pathlib.Path, shot: str) -> str:
    """The page's DOM after its scripts ran (MathJax included); saves a screenshot."""
    assert page.is_file(), f"{page} was not built"
    SHOTS.mkdir(parents=True, exist_ok=True)
    png = SHOTS / shot
    png.unlink(missing_ok=True)
    chromium(f"--screenshot={png}", "--window-size=1280,1600", page.as_uri())
    assert png.is_file() and png.stat().st_size > 10_000
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return chromium("--dump-dom", page.as_uri())


def test_the_built_site_renders_in_a_browser(site):
    """One test (the site is built once, also under pytest-xdist): the API page,
    a guide page, and the index of public names."""
    api_page_shows_signatures_and_typeset_formulas(site)
    guide_page_shows_formulas_and_code(site)
    index_lists_every_public_name(site)


def api_page_shows_signatures_and_typeset_formulas(site):
    dom = rendered(site / "api" / "perceptron.html", "api_perceptron.png")
    assert "<title>The perceptron - annjax" in dom
    # autodoc's signature of annjax.perceptron.train, with its keyword arguments
    assert 'id="annjax.perceptron.train"' in dom
    assert '<span class="pre">epochs</span>' in dom
    # MathJax 3 replaced the TeX of the docstrings' formulas with its own output
    assert "<mjx-container" in dom and "MathJax" in dom


def guide_page_shows_formulas_and_code(site):
    dom = rendered(site / "guide" / "1_perceptron.html", "guide_perceptron.png")
    assert "<title>1. The perceptron and the layer - annjax" in dom
    assert dom.count("<mjx-container") >= 2  # the neuron, the layer, the rule
    text = re.sub(r"<[^>]+>", "", dom)  # highlighting splits code into spans
    assert "ann.perceptron.train(d.X, d.y" in text  # the code cell
    # the link into the API reference resolves to the function's entry
    assert "api/perceptron.html#annjax.perceptron.train" in dom


def index_lists_every_public_name(site):
    import annjax

    html = (site / "api" / "index.html").read_text()
    for name in annjax.__all__:
        assert f'<span class="pre">{name}</span>' in html, name
