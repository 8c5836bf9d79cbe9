"""Reading a YAML file whose size and alias expansion are bounded.

PyYAML's safe loader builds an alias as a second reference to the same object, so a "billion
laughs" file (aliases of aliases of lists) loads in microseconds, and the cost arrives later,
when something walks the result (validation, JSON, a copy) and meets 10^9 nodes. ``read_yaml``
measures the expanded size on the composed node graph first (linear in the file's own nodes,
memoised per node) and refuses a file that would expand beyond ``max_nodes``, or that refers to
itself, before anything walks it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from study.core.errors import SpecError

#: A study file is a page of settings; these bounds are a thousand times what one needs.
MAX_BYTES = 1_000_000
MAX_NODES = 200_000


class _Cycle(Exception):
    pass


def _expanded_size(node: yaml.Node, memo: dict[int, int], open_: set[int], cap: int) -> int:
    key = id(node)
    if key in memo:
        return memo[key]
    if key in open_:
        raise _Cycle
    open_.add(key)
    if isinstance(node, yaml.MappingNode):
        children = [n for pair in node.value for n in pair]
    elif isinstance(node, yaml.SequenceNode):
        children = list(node.value)
    else:
        children = []
    total = 1
    for child in children:
        total += _expanded_size(child, memo, open_, cap)
        if total > cap:
            break
    open_.discard(key)
    memo[key] = total
    return total


def read_yaml(path: Path, max_bytes: int = MAX_BYTES, max_nodes: int = MAX_NODES) -> Any:
    """The data of the YAML file ``path``; a file too large, expanding beyond ``max_nodes``
    nodes, self-referring or malformed is one :class:`SpecError` naming the file."""
    size = path.stat().st_size
    if size > max_bytes:
        raise SpecError(f"{path}: {size:,} bytes; a study file may have at most {max_bytes:,}")
    text = path.read_text()
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        if node is None:
            return None
        try:
            n = _expanded_size(node, {}, set(), max_nodes)
        except _Cycle:
            raise SpecError(f"{path}: an alias refers to the node that contains it; a study "
                            "file must be a tree") from None
        except RecursionError:
            raise SpecError(f"{path}: nested too deeply to be a study file") from None
        if n > max_nodes:
            raise SpecError(f"{path}: its aliases expand to more than {max_nodes:,} values "
                            "(a 'billion laughs' file?); write the settings out instead")
        return yaml.safe_load(text)
    except RecursionError:
        raise SpecError(f"{path}: nested too deeply to be a study file") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        at = f" line {mark.line + 1}" if mark else ""
        raise SpecError(f"{path}:{at} malformed YAML: {getattr(err, 'problem', err)}") from None
