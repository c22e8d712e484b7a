"""Sphinx helpers for annjax's API reference.

``.. annjax-public-names::`` lists every name of ``annjax.__all__`` with a link to
the page that documents it (the public subpackage or module that exports it), and
documents in place the few names no public subpackage exports. A name added to
``__all__`` later appears without an edit of the docs, and a name the site does not
document is a broken reference, which fails the nitpicky build.
"""

import importlib
import inspect
import sys

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.util.docutils import SphinxDirective
from sphinx.util.nodes import make_refnode

# The pages of docs/api, in the order a name is looked up (first match wins).
PUBLIC = (
    "annjax.nn",
    "annjax.training",
    "annjax.analysis",
    "annjax.data",
    "annjax.data.augment",
    "annjax.datasets",
    "annjax.metrics",
    "annjax.optim",
    "annjax.callbacks",
    "annjax.activations",
    "annjax.losses",
    "annjax.initializers",
    "annjax.perceptron",
    "annjax.regularizers",
)


def home_of(name):
    """The public module whose page documents ``annjax.<name>``, or None."""
    for module_name in PUBLIC:
        module = importlib.import_module(module_name)
        if name in getattr(module, "__all__", ()):
            return module_name
    return None


class PublicNames(SphinxDirective):
    """A table of ``annjax.__all__``: each name, its kind and where it lives."""

    has_content = False

    def run(self):
        import annjax

        lines = [".. list-table::", "   :header-rows: 1", "   :widths: 30 70", ""]
        lines += ["   * - ``annjax.<name>``", "     - documented at", ""]
        here = []
        for name in sorted(annjax.__all__, key=str.lower):
            obj = getattr(annjax, name)
            if name.startswith("__"):
                where = f"``{obj!r}``"
            elif inspect.ismodule(obj):
                where = f":py:mod:`{obj.__name__}`"
            elif (home := home_of(name)) is not None:
                where = f":py:obj:`{home}.{name}`"
            else:
                where = f":py:obj:`annjax.{name}` (below)"
                here.append((name, obj))
            lines += [f"   * - ``{name}``", f"     - {where}"]
        lines.append("")
        for name, obj in here:
            kind = "autoclass" if inspect.isclass(obj) else "autofunction"
            lines += [f".. {kind}:: annjax.{name}", ""]
        node = nodes.container()
        self.state.nested_parse(StringList(lines), self.content_offset, node)
        return node.children


def skip_namedtuple_fields(app, what, name, obj, skip, options):
    """NamedTuple fields: their docstring is "Alias for field number N"; the class's
    ``Attributes:`` section documents them already (else each appears twice)."""
    doc = getattr(obj, "__doc__", None) or ""
    if what == "class" and doc.startswith("Alias for field number"):
        return True
    return skip


def _import(path):
    """The object at a dotted path (``annjax.nn.layers.dense``), or None."""
    parts = path.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        try:
            for part in parts[i:]:
                obj = getattr(obj, part)
        except AttributeError:
            return None
        return obj
    return None


def _documented(env):
    """id(object) -> documented full name, for the functions, classes and modules
    of the site (built once per build)."""
    cache = getattr(env, "_annjax_documented", None)
    if cache is None:
        cache = {}
        for name, entry in env.get_domain("py").objects.items():
            obj = _import(name)
            if inspect.isfunction(obj) or inspect.isclass(obj) or inspect.ismodule(obj):
                cache.setdefault(id(obj), (name, entry))
        env._annjax_documented = cache
    return cache


def resolve_alias(app, env, node, contnode):
    """An annjax name written as the user imports it (``annjax.fit``, a relative
    module ``layers`` in a package docstring) links to where that very object is
    documented (``annjax.training.fit``). A module that has no page of its own
    links to the page of its nearest documented package. Names that are not annjax
    objects stay unresolved, so nitpicky mode still reports them."""
    if node.get("refdomain") != "py":
        return None
    target = node["reftarget"].lstrip("~.")
    module = node.get("py:module") or ""
    objects = env.get_domain("py").objects
    # The name in the docstring's module or any package above it (KINDS in
    # annjax.analysis.findings is documented as annjax.analysis.KINDS).
    scope = module
    while scope:
        entry = objects.get(f"{scope}.{target}")
        if entry is not None:
            return make_refnode(
                app.builder, node["refdoc"], entry.docname, entry.node_id, contnode
            )
        scope = scope.rpartition(".")[0]
    candidates = [f"{module}.{target}"] if module else []
    candidates.append(target)
    documented = _documented(env)
    for path in candidates:
        if not path.startswith("annjax"):
            continue
        obj = _import(path)
        if obj is None or id(obj) not in documented:
            if not inspect.ismodule(obj):
                continue
            parent = path
            while "." in parent and id(obj) not in documented:
                parent = parent.rsplit(".", 1)[0]
                obj = _import(parent)
            if id(obj) not in documented:
                continue
        name, entry = documented[id(obj)]
        return make_refnode(
            app.builder, node["refdoc"], entry.docname, entry.node_id, contnode, name
        )
    # An internal helper that exists (``restore_train_state`` named in the
    # docstring of ``load``) but is not public: shown as code, without a link.
    if module.startswith("annjax") and _exists_inside(module, target):
        return contnode
    return None


def _exists_inside(package, target):
    """Whether ``target`` names an object of ``package`` or of a module below it."""
    if target.startswith("annjax") and _import(target) is not None:
        return True
    return any(
        name.startswith(package) and _import(f"{name}.{target}") is not None
        for name in list(sys.modules)
    )


def setup(app):
    app.add_directive("annjax-public-names", PublicNames)
    app.connect("missing-reference", resolve_alias)
    app.connect("autodoc-skip-member", skip_namedtuple_fields)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
