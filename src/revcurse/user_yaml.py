"""A user's YAML read strictly: every problem an InputError naming the file and line (configs, templates files).

Apart from ``config`` so that data readers (``facts_file``) can use it without importing the config root, which
imports the experiment registry and so every experiment's data reader.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from revcurse.errors import InputError, loader_problem


def load_user_yaml(text: str, source: str | Path, lines: bool = True) -> Any:
    """``yaml.safe_load`` of a user's YAML, refusing what it lets through silently (see ``compose_user_yaml``).

    Every failure is an InputError naming ``source`` (a file, or ``--set KEY``) and, with ``lines``, the line.
    """
    loader = _loader(text, source, lines)
    try:
        root = _compose(loader, source, lines)
        with _yaml_errors(source, lines):  # a bad tag or timestamp, a huge int: found while building values
            return None if root is None else loader.construct_document(root)
    finally:
        loader.dispose()


def compose_user_yaml(text: str, source: str | Path) -> yaml.Node | None:
    """The YAML node tree (nodes keep their line numbers) of a user's file, with ``load_user_yaml``'s checks.

    PyYAML keeps the last of a key given twice and reads ``.inf`` and ``.nan`` as numbers: a config with
    ``seeds: 3`` then ``seeds: 4``, or a learning rate of ``.inf``, would run without a word. Both are refused,
    naming the line and the key.
    """
    loader = _loader(text, source, True)
    try:
        return _compose(loader, source, True)
    finally:
        loader.dispose()


MERGE_TAG = "tag:yaml.org,2002:merge"  # "<<: *base": keys written beside it override the merged ones (allowed)
FLOAT_TAG = "tag:yaml.org,2002:float"


@contextmanager
def _yaml_errors(source: str | Path, lines: bool) -> Iterator[None]:
    """PyYAML's errors as InputErrors naming ``source`` and, with ``lines``, the line."""
    try:
        yield
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = mark.line + 1 if lines and mark is not None else None
        raise InputError(f"not valid YAML: {yaml_error_text(error)}", source, line) from None
    except (ValueError, RecursionError) as error:  # an int of over 4300 digits; nesting past the stack
        raise InputError(f"not readable YAML: {loader_problem(error, 'lists or mappings')}", source) from None


def _loader(text: str, source: str | Path, lines: bool) -> yaml.SafeLoader:
    with _yaml_errors(source, lines):  # the reader refuses control characters at once
        return yaml.SafeLoader(text)


def _compose(loader: yaml.SafeLoader, source: str | Path, lines: bool) -> yaml.Node | None:
    with _yaml_errors(source, lines):
        root = loader.get_single_node()
        if root is not None:
            _check_nodes(root, loader, source, lines)
        return root


def _check_nodes(root: yaml.Node, loader: yaml.SafeLoader, source: str | Path, lines: bool) -> None:
    """Refuse a key given twice in one mapping and a non-finite float, anywhere in the tree (walked once per node,
    so aliases cost nothing and a cycle ends)."""

    def refuse(message: str, node: yaml.Node) -> InputError:
        return InputError(message, source, node.start_mark.line + 1 if lines else None)

    def first_line(node: yaml.Node) -> str:
        return f" (first on line {node.start_mark.line + 1})" if lines else ""

    stack: list[tuple[yaml.Node, str]] = [(root, "")]
    seen: set[int] = set()
    while stack:
        node, prefix = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            keys: dict[object, yaml.Node] = {}
            for key_node, value_node in node.value:
                if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == MERGE_TAG:
                    stack.append((value_node, prefix))
                    continue
                dotted = f"{prefix}{key_node.value}"
                key = loader.construct_object(key_node)  # yes/true, 1/0x1: one key however it is written
                if key in keys:
                    raise refuse(f"key {dotted!r} given twice{first_line(keys[key])}", key_node)
                keys[key] = key_node
                stack.append((value_node, f"{dotted}."))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend((item, prefix) for item in node.value)
        elif node.tag == FLOAT_TAG and not math.isfinite(loader.construct_yaml_float(node)):
            where = f"{prefix.rstrip('.')}: " if prefix else ""
            raise refuse(f"{where}{node.value!r} is not a finite number (inf and nan are refused)", node)


def yaml_error_text(error: yaml.YAMLError) -> str:
    """A YAML error on one line: what the parser was doing, what it found, and the column (the line goes apart)."""
    if not isinstance(error, yaml.MarkedYAMLError):
        return " ".join(str(error).split())
    parts = [part for part in (error.context, error.problem) if part]
    text = "; ".join(" ".join(part.split()) for part in parts) or "cannot parse"
    mark = error.problem_mark
    return text if mark is None else f"{text} (column {mark.column + 1})"
