"""The one YAML reader for files users give: recipes and tuner search spaces.

A recipe or search space is a few lines of YAML, so whatever could make a
reader hang, grow or crash is refused with one line naming the file:

* a file over :data:`MAX_BYTES`, a binary or non-UTF-8 file, and a FIFO or
  device (refused before it is read, never waited on);
* anchors and aliases that expand to a big structure (a "billion laughs" of a
  few hundred bytes expands to 10**9 values): at most :data:`MAX_ALIASES`
  aliases, standing for at most :data:`MAX_ALIAS_VALUES` values in all, and
  no alias inside its own anchor (a recursive structure);
* nesting deeper than :data:`MAX_DEPTH` (Python's recursion limit would
  raise ``RecursionError`` far down);
* a key written twice in one mapping (YAML would keep only the last).

It reads YAML 1.2 floats such as ``1e-3`` as numbers (PyYAML's YAML 1.1 reads
them as strings), as the recipes' learning rates are written.

Example:
    >>> from tfcompress.errors import RecipeError
    >>> load_text("pruning: {final_sparsity: 0.5}", "recipe", RecipeError)
    {'pruning': {'final_sparsity': 0.5}}
    >>> load_text("a: &x [1, 2]\\nb: *x", "recipe", RecipeError)
    {'a': [1, 2], 'b': [1, 2]}
"""

import re

import yaml

from tflite_export._userfiles import read_limited

__all__ = ["load_text", "load_file", "MAX_BYTES", "MAX_DEPTH", "MAX_ALIASES", "MAX_ALIAS_VALUES"]

#: The largest file read: a recipe or space is a few lines; a bigger file is the wrong file (a model, data).
MAX_BYTES = 1 << 20
#: How deep mappings and lists may nest (a recipe nests 3 levels, a space 2).
MAX_DEPTH = 50
#: How many aliases (``*name``) a file may use.
MAX_ALIASES = 50
#: How many values all aliases together may stand for, counted as expanded.
MAX_ALIAS_VALUES = 10_000


class _Refused(Exception):
    """A limit or rule of this reader; the caller's error class reports it."""


def _line(node_or_event):
    return node_or_event.start_mark.line + 1


class _BoundedLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` with the limits above, counted while the document is composed."""

    def __init__(self, text):
        super().__init__(text)
        self._depth = 0
        self._sizes = {}  # id(node) -> values it stands for, expanded (nodes live until the end: ids are stable)
        self._aliases = 0
        self._alias_values = 0

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            node = super().compose_node(parent, index)
            size = self._sizes.get(id(node))
            if size is None:
                raise _Refused(f"has the alias *{event.anchor} inside its own anchor (line {_line(event)}): "
                               "a structure that contains itself; write the value out.")
            self._aliases += 1
            self._alias_values += size
            if self._aliases > MAX_ALIASES:
                raise _Refused(f"uses more than {MAX_ALIASES} aliases (*name; line {_line(event)}): "
                               "write the values out.")
            if self._alias_values > MAX_ALIAS_VALUES:
                raise _Refused(f"has aliases that expand to more than {MAX_ALIAS_VALUES} values (*{event.anchor}, "
                               f"line {_line(event)}; a YAML bomb?): write the values out.")
            return node
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise _Refused(f"nests deeper than {MAX_DEPTH} levels (line {_line(self.peek_event())}): "
                               "a recipe or search space nests 2 or 3.")
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        if isinstance(node, yaml.SequenceNode):
            size = 1 + sum(self._sizes[id(c)] for c in node.value)
        elif isinstance(node, yaml.MappingNode):
            size = 1 + sum(self._sizes[id(k)] + self._sizes[id(v)] for k, v in node.value)
        else:
            size = 1
        self._sizes[id(node)] = size
        return node

    def construct_unique_mapping(self, node, deep=False):
        """A mapping, refusing a key written twice (PyYAML would keep the last silently)."""
        seen = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *base` may override on purpose
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.get(key)
            except TypeError:  # an unhashable key: the base loader says why
                continue
            line = _line(key_node)
            if first is not None:
                lines = f"lines {first} and {line}" if first != line else f"line {line}"
                raise _Refused(f"has the key {_short(key)} twice ({lines}): YAML would keep only the last; "
                               "delete one.")
            seen[key] = line
        return yaml.SafeLoader.construct_mapping(self, node, deep)


def _short(value):
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


_BoundedLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
                               _BoundedLoader.construct_unique_mapping)
# YAML 1.1 (PyYAML) reads `1e-3` as a string; recipes write learning rates that way (YAML 1.2 floats).
_BoundedLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"))


def load_text(text, source, error):
    """YAML text -> Python data (None for an empty document), within this module's limits.

    Args:
        text: the YAML text.
        source: what the messages call it (``"recipe r.yaml"``).
        error: the exception class raised (``RecipeError``, ``TuningError``).

    Returns:
        The document's data, or None when it has no content.

    Raises:
        error: invalid YAML, a key written twice, or a limit passed (one line).
    """
    if len(text) > MAX_BYTES:
        raise error(f"{source} is over 1 MiB, far too big for a few lines of YAML.")
    loader = None
    try:
        loader = _BoundedLoader(text)  # its reader refuses control characters here, before any parsing
        return loader.get_single_data()
    except _Refused as e:
        raise error(f"{source} {e}") from None
    except yaml.MarkedYAMLError as e:
        where = f" (line {e.problem_mark.line + 1})" if e.problem_mark else ""
        raise error(f"{source} is not valid YAML: {e.problem or e.context}{where}.") from None
    except yaml.reader.ReaderError as e:  # a control character (YAML allows only printable text)
        char = f"#x{e.character:04x}" if isinstance(e.character, int) else repr(e.character)
        raise error(f"{source} is not YAML text: it holds the control character {char} at offset {e.position}; "
                    "save it as plain UTF-8 text.") from None
    except yaml.YAMLError as e:
        raise error(f"{source} is not valid YAML: {str(e).splitlines()[0]}") from None
    except RecursionError:  # a guard: the depth limit should stop any nesting first
        raise error(f"{source} nests too deeply to read.") from None
    finally:
        if loader is not None:
            loader.dispose()


def load_file(path, what, error):
    """A YAML file's data (None for an empty document), refusing what is not a small UTF-8 text file.

    Args:
        path: the file.
        what: what the file is, for messages (``"recipe"``, ``"search space"``).
        error: the exception class raised.

    Returns:
        The document's data, or None when it has no content.

    Raises:
        error: the file is missing, not a regular file (a FIFO is refused
            without waiting), over 1 MiB, binary, not UTF-8, not valid YAML,
            has a key twice, or passes a limit of this module (one line).

    Example:
        >>> from tfcompress.errors import RecipeError
        >>> load_file("recipe.yaml", "recipe", RecipeError)  # doctest: +SKIP
        {'pruning': {'final_sparsity': 0.5}}
    """
    raw = read_limited(path, what, MAX_BYTES, error)
    hint = f"pass the {what}'s .yaml file"
    if len(raw) > MAX_BYTES:
        raise error(f"{what} {path} is over 1 MiB, far too big for a {what} (a few lines of YAML): "
                    f"is it a model or data file? {hint[0].upper()}{hint[1:]}.")
    if b"\x00" in raw:
        raise error(f"{what} {path} is a binary file, not YAML text: {hint}.")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise error(f"{what} {path} is not UTF-8 text (byte 0x{raw[e.start]:02x} at offset {e.start}): "
                    f"save it as UTF-8, or {hint}.") from None
    return load_text(text, f"{what} {path}", error)
