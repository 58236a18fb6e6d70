"""The Sphinx side of the site: reference pages generated from the code, and strict cross-references.

- ``builder-inited`` writes one page per module under ``api/`` (gitignored: the
  docstrings are the source) and the index of the public names.
- ``.. recipe-fields:: pruning`` renders a recipe section's fields (type,
  default, allowed values, meaning) from the dataclass, its ``Args:`` and its
  own checks (see ``tfdocs_facts.py``).
- ``missing-reference`` resolves the short names the docstrings use
  (``:class:`Dataset``` in a module that imports it, ``:func:`tfcompress.optimize```
  for the re-export) to the one place the object is documented. A name that is
  nowhere stays unresolved and fails the strict (``-W -n``) build.
- ``build-finished`` checks that every public name, recipe field and CLI option
  is documented.
"""

import importlib
import inspect
import os
import re

import tfdocs_facts as facts
from docutils import nodes
from docutils.statemachine import StringList
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

log = logging.getLogger("tfdocs")

# Names of other projects' objects (annotations, prose): not ours to document, no intersphinx offline.
EXTERNAL_ROOTS = {
    "np", "numpy", "tf", "tensorflow", "keras", "tf_keras", "tfmot", "keras_tuner", "kt", "matplotlib", "plt",
    "typing", "collections", "pathlib", "os", "io", "argparse", "dataclasses", "enum", "multiprocessing", "socket",
    "subprocess", "contextlib", "concurrent", "threading", "yaml", "sklearn", "PIL", "ai_edge_litert",
    "ai_edge_quantizer", "numbers", "types", "abc", "json", "zipfile", "tempfile", "logging", "warnings", "re",
    "builtins", "functools", "datetime", "queue", "signal", "tensorflow_model_optimization", "resource", "h5py",
}
BUILTINS = {n for n in dir(__import__("builtins"))} | {
    "Any", "Callable", "Iterable", "Iterator", "Sequence", "Mapping", "MutableMapping", "Optional", "Union",
    "Literal", "NoneType", "Path", "ndarray", "array", "array_like", "callable", "optional", "function",
}

INTRO = {
    "tfcompress": "Compression: recipes, ``optimize``, ``check``, models and data.",
    "tflite_export": "Export, inspection, evaluation and timing of ``.tflite`` files (works without tfcompress).",
}


def _title(text, ch="="):
    return f"{text}\n{ch * len(text)}\n"


def _summary(obj):
    """The docstring's first paragraph, its cross-references as plain code (they were written for its module)."""
    doc = (inspect.getdoc(obj) or "").strip().split("\n\n")[0].replace("\n", " ")
    def plain(m):
        text = m.group(2)
        return f"``{text.split('.')[-1] if m.group(1) else text}``"

    doc = re.sub(r":\w+:`(~?)([^`<]*?)(?: <[^>]*>)?`", plain, doc)
    return doc


def _write(path, text):
    old = open(path, encoding="utf-8").read() if os.path.exists(path) else None
    if old != text:  # unchanged pages keep their mtime, so an incremental build stays incremental
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)


def generate_api(app):
    """Write ``api/index.rst`` (the public names of both packages) and one page per module."""
    out = os.path.join(app.srcdir, "api")
    os.makedirs(out, exist_ok=True)
    mods = facts.modules()
    wanted = {f"{m}.rst" for m in mods} | {"index.rst"}
    for stale in set(os.listdir(out)) - wanted:
        os.remove(os.path.join(out, stale))
    for m in mods:
        if m in facts.PACKAGES:  # the package: its docstring, then its public names linked to their modules
            page = [_title(f"``{m}``"), f".. automodule:: {m}", "   :no-members:", "", _public_table(m), ""]
        else:  # what the module defines; what it re-exports links to where that is documented
            own, elsewhere = facts.own_members(m)
            page = [_title(f"``{m}``"), f".. automodule:: {m}", "   :no-members:", ""]
            if elsewhere:
                page += ["Re-exported here: " + ", ".join(_ref(m, n) for n in elsewhere) + ".", ""]
            attr_docs = _attr_docs(m)
            for name in own:
                kind = _kind(getattr(importlib.import_module(m), name))
                if kind == "data" and name not in attr_docs:
                    page += [f".. py:data:: {m}.{name}", ""]  # a constant without a ``#:`` comment: named only
                    continue
                page += [f".. auto{kind}:: {m}.{name}"]
                page += ["   :members:", "   :show-inheritance:", ""] if kind in ("class", "exception") else [""]
        _write(os.path.join(out, f"{m}.rst"), "\n".join(page) + "\n")
    public = [m for m in facts.public_modules() if m not in facts.PACKAGES]
    internal = [m for m in mods if m not in facts.public_modules()]
    index = [_title("Python API"),
             "Generated from the docstrings. The two packages' public names first, then every module: "
             "the ``_private`` ones are internals, documented for contributors.", ""]
    for pkg in facts.PACKAGES:
        index += [_title(f"``{pkg}``", "-"), INTRO[pkg], "", _public_table(pkg), ""]
    index += [_title("Modules", "-"), ".. toctree::", "   :maxdepth: 1", ""]
    index += [f"   {m}" for m in list(facts.PACKAGES) + public] + [""]
    index += [_title("Internals", "-"), ".. toctree::", "   :maxdepth: 1", ""] + [f"   {m}" for m in internal] + [""]
    _write(os.path.join(out, "index.rst"), "\n".join(index))


def _attr_docs(modname):
    from sphinx.pycode import ModuleAnalyzer

    return {name for (scope, name) in ModuleAnalyzer.for_module(modname).find_attr_docs() if scope == ""}


def _kind(obj):
    if inspect.isclass(obj):
        return "exception" if issubclass(obj, BaseException) else "class"
    return "function" if callable(obj) and hasattr(obj, "__name__") and hasattr(obj, "__code__") else "data"


def _ref(modname, name):
    obj = getattr(importlib.import_module(modname), name)
    target, role = _canonical(obj)
    return f":{role}:`{name} <{target}>`" if target else f"``{name}``"


def _canonical(obj):
    mod, qual = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
    if inspect.ismodule(obj):
        return obj.__name__, "mod"
    if mod and qual and "<" not in qual:
        return f"{mod}.{qual}", "class" if inspect.isclass(obj) else "func"
    return None, None


def _public_table(pkg):
    """A list-table of the package's ``__all__``: each name linked to where it is documented."""
    rows = [".. list-table::", "   :widths: 30 70", ""]
    for name, obj in facts.public_names(pkg).items():
        target, role = _canonical(obj)
        if inspect.ismodule(obj):
            ref, text = f":mod:`{pkg}.{name} <{target}>`", _summary(obj)
        elif target:
            ref, text = f":{role}:`{pkg}.{name} <{target}>`", _summary(obj)
        else:  # a constant: say what it is
            ref, text = f"``{pkg}.{name}``", f"``{obj!r}``" if len(repr(obj)) < 80 else type(obj).__name__
        rows += [f"   * - {ref}", f"     - {text or ' '}"]
    return "\n".join(rows)


class RecipeFields(SphinxDirective):
    """``.. recipe-fields:: pruning``: one recipe section's fields as a table, from the code."""

    required_arguments = 1

    def run(self):
        key = self.arguments[0]
        cls = dict(facts.recipe_sections())[key]
        lines = [".. list-table::", "   :header-rows: 1", "   :widths: 16 14 10 25 35", "",
                 "   * - field", "     - type", "     - default", "     - allowed", "     - meaning"]
        for f in facts.recipe_fields(cls, key):
            if not f["doc"]:
                log.warning(f"recipe field {key}.{f['name']} has no Args: entry in {cls.__name__}'s docstring",
                            location=self.get_location())
            lines += [f"   * - ``{f['name']}``", f"     - ``{f['type']}``", f"     - ``{f['default']}``",
                      f"     - {f['allowed']}", f"     - {f['doc'] or ' '}"]
        body = StringList([line for line in lines], source=f"<recipe-fields {key}>")
        node = nodes.container()
        with _module_context(self.env, cls.__module__):
            self.state.nested_parse(body, self.content_offset, node)
        return node.children


class _module_context:
    """Parse a class's docstring text with its module as the current one, so its short references resolve."""

    def __init__(self, env, module):
        self.env, self.module = env, module

    def __enter__(self):
        self.old = self.env.ref_context.get("py:module")
        self.env.ref_context["py:module"] = self.module

    def __exit__(self, *exc):
        if self.old is None:
            self.env.ref_context.pop("py:module", None)
        else:
            self.env.ref_context["py:module"] = self.old


def _lookup(domain, names):
    for name in names:
        if name in domain.objects:
            return name
    return None


def resolve_short_names(app, env, node, contnode):
    """Resolve ``:class:`Dataset``` / ``:func:`tfcompress.optimize``` to where the object is documented."""
    if node.get("refdomain") != "py":
        return None
    target = node["reftarget"].lstrip("~.")
    domain = env.get_domain("py")
    module = node.get("py:module")
    klass = node.get("py:class")
    candidates = []
    # 1. the name as the module that wrote it sees it: its imports, its own classes' methods
    if module:
        try:
            mod = importlib.import_module(module)
            head, _, rest = target.partition(".")
            obj = getattr(mod, head, None)
            for part in rest.split(".") if rest else ():
                obj = getattr(obj, part, None)
            canon, _ = _canonical(obj) if obj is not None else (None, None)
            if canon:
                candidates.append(canon)
            if inspect.ismodule(obj):
                candidates.append(obj.__name__)
        except Exception:  # noqa: BLE001 - an import that fails here means only "not this way"
            pass
        if klass:
            candidates.append(f"{module}.{klass}.{target}")
        parts = module.split(".")
        candidates += [".".join(parts[:i] + [target]) for i in range(len(parts), 0, -1)]
    # 2. a dotted name: import it and find where it is defined (re-exports, tfcompress.optimize)
    imported, obj = _import_dotted(target)
    if imported:
        canon, _ = _canonical(obj) if obj is not None else (None, None)
        if canon:
            candidates.append(canon)
        elif obj is not None and inspect.ismodule(obj):
            candidates.append(obj.__name__)
    found = _lookup(domain, candidates)
    if found is None and "." not in target:  # 4. a name some module of ours imports (Raises: FailedTrialError)
        candidates += _anywhere(target)
        found = _lookup(domain, candidates)
    real = bool(candidates) and any(c.split(".")[0] in ("tfcompress", "tflite_export") for c in candidates)
    if found is None:
        # 3. a unique object of that name in our packages (a method or field named from prose)
        tails = [n for n in domain.objects if n.endswith("." + target)]
        if len(tails) == 1:
            found = tails[0]
    if found is None:
        root = target.split("[")[0].split(".")[0]
        if root in EXTERNAL_ROOTS or root in BUILTINS or any(c.split(".")[0] in EXTERNAL_ROOTS for c in candidates):
            return contnode  # another project's name (or our alias of one): shown as code, not linked
        if real and _exists(candidates):
            return contnode  # a real object of ours kept out of the reference (private helper): code, not a link
        return None  # left unresolved: the strict build fails on it
    obj = domain.objects[found]
    return domain.resolve_xref(env, node["refdoc"], app.builder, obj.objtype if obj.objtype != "module" else "mod",
                               found, node, contnode) or _make_ref(app, node, obj, contnode)


def _anywhere(name):
    """Where the modules of ours that hold an attribute ``name`` say it is defined (one answer, or none)."""
    homes = set()
    for modname in facts.modules():
        obj = getattr(importlib.import_module(modname), name, None)
        canon, _ = _canonical(obj) if obj is not None else (None, None)
        if canon:
            homes.add(canon)
    return sorted(homes) if len(homes) == 1 else []


def _import_dotted(name):
    """``(imported, obj)``: the longest importable module prefix of ``name`` and the attribute path after it
    (``obj`` None when an attribute is missing; ``imported`` False when no prefix imports)."""
    modname, _, attr = name.rpartition(".")
    while modname:
        try:
            obj = importlib.import_module(modname)
        except Exception:  # noqa: BLE001 - an import that fails here means only "a shorter prefix, then"
            modname, _, more = modname.rpartition(".")
            attr = f"{more}.{attr}"
            continue
        for part in attr.split("."):
            obj = getattr(obj, part, None)
        return True, obj
    return False, None


def _exists(candidates):
    return any(_import_dotted(name)[1] is not None for name in candidates)


def plain_examples(app, what, name, obj, options, lines):
    """An ``Example:`` of shell lines (``$ tfcompress ...``) becomes a literal block, not a doctest section."""
    i = 0
    while i < len(lines):
        head = lines[i]
        if head.strip() in ("Example:", "Examples:"):
            indent = len(head) - len(head.lstrip())
            j = i + 1
            while j < len(lines) and (not lines[j].strip() or len(lines[j]) - len(lines[j].lstrip()) > indent):
                j += 1
            body = [line for line in lines[i + 1:j] if line.strip()]
            if body and not any(line.strip().startswith(">>>") for line in body):
                lines[i] = head.rstrip()[:-1] + "::"
                if i + 1 < len(lines) and lines[i + 1].strip():
                    lines.insert(i + 1, "")
            i = j
        else:
            i += 1


def attribute_first_line(app, what, name, obj, options, lines):
    """Keep napoleon from reading "The cluster count (per layer): ..." in a constant's docstring as a type."""
    if what in ("data", "attribute", "property") and lines and ":" in lines[0]:
        before = lines[0].split(":", 1)[0]
        if " " in before.strip() or before.strip()[:1].isdigit():
            lines[0] = ": " + lines[0]  # an empty "type" before the first colon: napoleon keeps the text whole


def _make_ref(app, node, obj, contnode):
    from sphinx.util.nodes import make_refnode

    return make_refnode(app.builder, node["refdoc"], obj.docname, obj.node_id, contnode, obj.node_id)


def check_coverage(app, exception):
    """Warn (an error under ``-W``) for every public name, recipe field or CLI option without documentation."""
    if exception:
        return
    for name in facts.undocumented_public_names():
        log.warning(f"public name without a docstring: {name}")
    for name in facts.undocumented_recipe_fields():
        log.warning(f"recipe field without an Args: entry: {name}")
    for name in facts.undocumented_cli_options():
        log.warning(f"command-line option without help: {name}")
    domain = app.env.get_domain("py")
    for pkg in facts.PACKAGES:
        for name, obj in facts.public_names(pkg).items():
            target, _ = _canonical(obj)
            if target and not inspect.ismodule(obj) and target not in domain.objects:
                log.warning(f"public name {pkg}.{name} ({target}) is not in the API reference")


def setup(app):
    app.connect("builder-inited", generate_api)
    app.connect("autodoc-process-docstring", plain_examples, priority=100)  # before napoleon (500)
    app.connect("autodoc-process-docstring", attribute_first_line, priority=100)
    app.connect("missing-reference", resolve_short_names)
    app.connect("build-finished", check_coverage)
    app.add_directive("recipe-fields", RecipeFields)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}

