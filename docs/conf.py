"""Sphinx configuration of annjax's site (build: see README, "Documentation").

Offline and deterministic: MathJax is served from the site itself
(``sphinx-mathjax-offline``, not a CDN), and there is no intersphinx (its
inventories would be fetched from the network, which CI does not have):
references into Python, NumPy, JAX, optax and flax are listed in
``nitpick_ignore_regex`` instead, so nitpicky mode (``-n``) checks every
reference into annjax and nothing else.
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "_ext"))
sys.path.insert(0, os.path.dirname(HERE))  # this checkout's annjax wins

import annjax  # noqa: E402

project = "annjax"
author = "the annjax authors"
copyright = "the annjax authors"
release = version = annjax.__version__

extensions = [
    "myst_nb",  # Markdown pages; {code-cell} blocks executed at build time
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",  # Google-style docstrings
    "sphinx.ext.mathjax",
    "sphinx-mathjax-offline",  # MathJax 3 copied into _static: formulas render offline
    "sphinx.ext.viewcode",
    "annjax_api",  # docs/_ext: the table of annjax.__all__, NamedTuple fields
]

source_suffix = {".rst": "restructuredtext", ".md": "myst-nb"}
exclude_patterns = ["_build", "**.ipynb_checkpoints", "README.md"]
root_doc = "index"

html_theme = "furo"
html_title = f"annjax {release}"
html_static_path = []

# MyST: $…$ and $$…$$ math, ::: fences, heading anchors for links like page.md#part.
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_heading_anchors = 3

# Executed pages: every run executes every code cell; a failing cell fails the build.
nb_execution_mode = "force"
nb_execution_raise_on_error = True
nb_execution_timeout = 300
nb_execution_show_tb = True
nb_merge_streams = True

# autodoc / napoleon
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_preserve_defaults = True
autodoc_default_options = {"members": True, "show-inheritance": False}
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_ivar = True  # "Attributes:" as fields, not a second set of entries
napoleon_use_rtype = False

nitpicky = True
# Third-party and standard-library targets: no inventories offline (see above).
nitpick_ignore_regex = [
    (r"py:.*", r"(jax|jaxlib|jnp|np|numpy|optax|flax|chex|matplotlib|plt)(\..*)?"),
    (r"py:.*", r"(typing|collections|collections\.abc|os|pathlib|enum|types)\..*"),
    # annjax's own type aliases (Params = Any, …): shown by name in signatures
    (
        r"py:.*",
        r"(Array|ArrayLike|DTypeLike|PRNGKeyArray|PyTree|Key|Shape|Params|State|Data|Figure|_Target)",
    ),
    (
        r"py:.*",
        r"(int|float|str|bool|bytes|dict|list|tuple|set|frozenset|object|type|None"
        r"|callable|Callable|Iterable|Iterator|Sequence|Mapping|Any|Literal|Optional"
        r"|Union|NamedTuple|PathLike|Path|Exception|ValueError|TypeError"
        r"|FileNotFoundError|array-like|optional|function|module|default)",
    ),
]

suppress_warnings = []
