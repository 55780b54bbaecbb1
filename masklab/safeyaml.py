"""YAML that costs no more than its size: safe loading with limits on aliases and nesting.

PyYAML's safe loader shares aliased nodes, so a few hundred bytes of `&a [*b, *b, ...]`
(a "billion laughs" document) load quickly, and then anything that walks the value
(validation, an error message, hashing the spec) expands it into gigabytes. Here the
document is composed into its node graph first and measured, counting every alias as
the copy it stands for, before a single Python object is built. A document that would
expand beyond MAX_NODES values or nest deeper than MAX_DEPTH is refused with a
SpecError; so is a recursive alias.
"""

from __future__ import annotations

from typing import Any

import yaml

from masklab.errors import SpecError

MAX_NODES = 200_000  # a large study spec has a few thousand
MAX_DEPTH = 64  # masklab's deepest key path is about 6


def _measure(root: yaml.Node) -> None:
    """Expanded size and depth of a node graph, visiting each distinct node once."""
    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        children = _children(node)
        if done:
            on_path.discard(key)
            size[key] = 1 + sum(size[id(c)] for c in children)
            depth[key] = 1 + max((depth[id(c)] for c in children), default=0)
            if size[key] > MAX_NODES:
                raise SpecError(
                    f"the YAML expands to more than {MAX_NODES:,} values through aliases (&anchor / *alias); "
                    "write the values out or use fewer aliases"
                )
            if depth[key] > MAX_DEPTH:
                raise SpecError(f"the YAML nests more than {MAX_DEPTH} levels deep; a spec is a few levels deep")
            continue
        if key in size:
            continue
        if key in on_path:
            raise SpecError("the YAML holds a recursive alias (an anchor used inside itself); remove it")
        on_path.add(key)
        stack.append((node, True))
        stack.extend((c, False) for c in children if id(c) not in size)
        if len(on_path) > MAX_DEPTH:
            raise SpecError(f"the YAML nests more than {MAX_DEPTH} levels deep; a spec is a few levels deep")


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def load(text: str, loader: type = yaml.SafeLoader) -> Any:
    """The single document in `text`, built by `loader` (a SafeLoader subclass) after the
    limits above are checked. YAML syntax errors propagate as yaml.YAMLError."""
    instance = loader(text)
    try:
        try:
            node = instance.get_single_node()
        except RecursionError:
            raise SpecError(f"the YAML nests more than {MAX_DEPTH} levels deep; a spec is a few levels deep") from None
        if node is None:
            return None
        _measure(node)
        return instance.construct_document(node)
    finally:
        instance.dispose()
