"""What the reference pages are generated from, and what the coverage test checks.

One place reads the code for both: the Sphinx extension (``tfdocs.py``) renders
these facts, and ``tests/test_docs.py`` fails when one of them is undocumented
(a public name without a docstring, a recipe field without an ``Args:`` entry,
a command-line option without help).
"""

import argparse
import dataclasses
import importlib
import inspect
import pkgutil
import re

PACKAGES = ("tfcompress", "tflite_export")


# --- modules and public names ---------------------------------------------------------------------------------


def modules():
    """Every importable module of the two packages (``tfcompress.models`` and its modules included), sorted."""
    names = []
    for pkg in (*PACKAGES, "tfcompress.models"):  # models/ is installed as tfcompress.models, not under tfcompress/
        mod = importlib.import_module(pkg)
        names.append(pkg)
        for info in pkgutil.walk_packages(mod.__path__, pkg + "."):
            if not info.name.endswith("__main__"):
                names.append(info.name)
    return sorted(set(names))


def public_modules():
    """Modules a user imports: no part of the dotted name starts with an underscore."""
    return [m for m in modules() if not any(p.startswith("_") for p in m.split("."))]


def public_names(modname):
    """``{name: object}`` for the module's ``__all__`` (or its public callables and classes defined there)."""
    mod = importlib.import_module(modname)
    names = getattr(mod, "__all__", None)
    if names is None:
        names = [n for n, v in vars(mod).items() if not n.startswith("_")
                 and (inspect.isclass(v) or inspect.isfunction(v)) and getattr(v, "__module__", None) == modname]
    return {n: getattr(mod, n) for n in names if hasattr(mod, n)}


def defined_names(modname):
    """Names a module's own source defines at its top level (functions, classes, assignments)."""
    import ast

    mod = importlib.import_module(modname)
    tree = ast.parse(inspect.getsource(mod))
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            for target in node.targets if isinstance(node, ast.Assign) else [node.target]:
                names.update(n.id for n in ast.walk(target) if isinstance(n, ast.Name))
    return names


def own_members(modname):
    """``(defined, reexported)``: the module's public names defined in it, and those it re-exports."""
    names = public_names(modname)
    here = defined_names(modname)
    def defined_here(n, v):  # ``X = other_package.X`` is an alias, not a definition
        if inspect.isclass(v) or inspect.isfunction(v):
            return getattr(v, "__module__", None) == modname
        return n in here

    own = [n for n, v in names.items() if defined_here(n, v) and not n.startswith("__") and not inspect.ismodule(v)]
    elsewhere = [n for n, v in names.items() if not defined_here(n, v) and not n.startswith("__")
                 and not inspect.ismodule(v)]
    return own, elsewhere


def undocumented_public_names():
    """``module.name`` for every public function or class of a public module that has no docstring of its own."""
    missing = []
    for modname in public_modules():
        for name, obj in public_names(modname).items():
            if not (inspect.isclass(obj) or inspect.isfunction(obj)):
                continue
            doc = obj.__dict__.get("__doc__") if inspect.isclass(obj) else obj.__doc__
            if inspect.isclass(obj) and dataclasses.is_dataclass(obj) and doc and doc.startswith(obj.__name__ + "("):
                doc = None  # the signature dataclasses write in, not a docstring
            if not (doc or "").strip():
                missing.append(f"{modname}.{name}")
    return missing


# --- recipe stages --------------------------------------------------------------------------------------------


def recipe_sections():
    """``[(key, class)]``: the recipe's top level, then every stage in run order, then the shared settings."""
    from tfcompress import techniques
    from tfcompress.recipe import Distillation, Recipe
    from tfcompress.schedules import Optimizer, Schedule

    return [("recipe", Recipe), *techniques.stage_classes().items(), ("distillation", Distillation),
            ("optimizer", Optimizer), ("lr_schedule", Schedule)]


_ARG = re.compile(r"^(\s*)(\w+)(?: \(([^)]*)\))?: ?(.*)$")


def _args_of(doc):
    """``{name: text}`` of one Google-style docstring's ``Args:`` (or ``Attributes:``) section."""
    lines = inspect.cleandoc(doc or "").splitlines()
    out, indent, name, inside = {}, None, None, False
    for line in lines:
        if line.strip() in ("Args:", "Attributes:"):
            inside, indent, name = True, None, None
            continue
        if not inside:
            continue
        if line.strip() and not line.startswith(" "):
            inside = False
            continue
        m = _ARG.match(line)
        if m and (indent is None or len(m.group(1)) == indent):
            indent, name = len(m.group(1)), m.group(2)
            out[name] = m.group(4).strip()
        elif name and line.strip():
            out[name] = (out[name] + " " + line.strip()).strip()
    return out


def args_section(cls):
    """``{field: text}`` from the ``Args:`` sections of ``cls`` and its bases (the class's own entry wins)."""
    out = {}
    for klass in cls.__mro__:
        for name, text in _args_of(klass.__dict__.get("__doc__")).items():
            out.setdefault(name, text)
    return out


def type_text(tp):
    """A field's annotation as a short string: ``float``, ``int | None``, ``Sequence[str] | None``."""
    text = tp if isinstance(tp, str) else getattr(tp, "__name__", None) if isinstance(tp, type) else str(tp)
    text = re.sub(r"typing\.Optional\[(.*)\]$", r"\1 | None", text or str(tp))
    text = re.sub(r"\b(?:typing|collections\.abc|tfcompress(?:\.\w+)*)\.", "", text)
    return text.replace("NoneType", "None")


def default_text(f):
    """A field's default as YAML would say it."""
    if f.default is not dataclasses.MISSING:
        value = f.default
    elif f.default_factory is not dataclasses.MISSING:
        value = f.default_factory()
    else:
        return "(required)"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if dataclasses.is_dataclass(value):
        return f"{type(value).__name__}()"
    return repr(value)


_PROBES = (-1e12, 1e12, -1, 0, 2.5, "\x01?", [object()], {"?": object()})
_APPLIES = re.compile(r"does not apply to \w+ '[^']*' \(it applies to ([\w, ]+)\)")


def _rule(message, key, name):
    """The allowed values a check's message states: "must be in [0, 1)" -> "in [0, 1)"."""
    text = message.strip().rstrip(".")
    text = re.sub(r", got .*$", "", text)
    for prefix in (f"{key}.{name} ", f"schedule.{name} ", f"{name} "):
        if text.startswith(prefix):
            text = text[len(prefix):]
            break
    return re.sub(r"^must be (a number )?", "", text)


def allowed_values(cls, key, name):
    """What the field accepts, in the words of its own check, found by giving it values it refuses."""
    from tfcompress.errors import RecipeError

    base, applies = {}, None
    for _attempt in range(2):
        rules = []
        for probe in _PROBES:
            try:
                cls(**base, **{name: probe})
            except RecipeError as e:
                msg = str(e)
                m = _APPLIES.search(msg)
                if m:
                    applies = applies or [a.strip() for a in m.group(1).split(",")]
                    continue
                if f"{name}" in msg:
                    rule = _rule(msg, key, name)
                    if rule not in rules:
                        rules.append(rule)
            except Exception:  # noqa: BLE001 - a probe that is not even a RecipeError says nothing
                pass
        if applies and not base:
            choice = next(f for f in dataclasses.fields(cls) if f.name in ("name", "kind")).name
            base = {choice: applies[0]}
            continue
        # the most specific rule: a range or a list of choices beats "a number"
        rules.sort(key=lambda r: (not re.search(r"[\[(]|one of|at least|>|<|list|mapping|true", r), len(r)))
        text = rules[0] if rules else "any value"
        if applies:
            text += f" (applies to {', '.join(applies)})"
        return text
    return "any value"


def recipe_fields(cls, key):
    """``[dict(name, type, default, allowed, doc)]`` for every field of a recipe section, in declaration order."""
    docs = {k: re.sub(r"\s*Defaults to .*$", "", v) for k, v in args_section(cls).items()}  # the default has a column
    return [dict(name=f.name, type=type_text(f.type), default=default_text(f), allowed=allowed_values(cls, key, f.name),
                 doc=docs.get(f.name, "")) for f in dataclasses.fields(cls)]


def undocumented_recipe_fields():
    """``section.field`` for every recipe field without an ``Args:`` entry in its class (or a base)."""
    return [f"{key}.{f.name}" for key, cls in recipe_sections() for f in dataclasses.fields(cls)
            if not args_section(cls).get(f.name)]


# --- command line ---------------------------------------------------------------------------------------------


def cli_parsers():
    """``{"tfcompress": parser, "tfcompress demo": subparser, ...}`` from the real argparse parsers."""
    from tfcompress.cli import build_parser

    root = build_parser()
    out = {"tfcompress": root}
    for action in root._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                out[f"tfcompress {name}"] = sub
    return out


def undocumented_cli_options():
    """``"tfcompress bench --threads"`` for every option or argument whose help is empty."""
    missing = []
    for prog, parser in cli_parsers().items():
        for action in parser._actions:
            if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                continue
            if action.help == argparse.SUPPRESS:
                continue
            if not (action.help or "").strip():
                missing.append(f"{prog} {action.option_strings[0] if action.option_strings else action.dest}")
    return missing
