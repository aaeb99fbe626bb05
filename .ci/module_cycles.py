#!/usr/bin/env python3
"""Report import cycles between the top-level modules of a Rust crate.

Usage: python3 .ci/module_cycles.py gwcore-proxy/src

Reads every `<src>/*.rs` (each file is one module; `lib.rs`/`main.rs` are the
crate root and not counted), collects the `crate::<module>` references of
each (in `use` statements, including `use crate::{a, b::C}` groups, and in
paths in code), ignoring comments (doc comments included), string literals
and `#[cfg(test)]` modules, builds the module graph and prints each cycle:
every strongly connected component of more than one module, with the
references that close it. Exits 1 if there is any, 0 otherwise.
"""

import re
import sys
from pathlib import Path


def strip_comments_and_strings(text: str) -> str:
    """Blank out comments, string and char literals (keeps line structure)."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif text.startswith("/*", i):
            depth, i = 1, i + 2
            while i < n and depth:
                if text.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif text.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    if text[i] == "\n":
                        out.append("\n")
                    i += 1
        elif (m := re.match(r'b?r(#*)"', text[i:i + 12])) and (
            i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")
        ):
            end = '"' + m.group(1)
            j = text.find(end, i + m.end())
            j = n if j < 0 else j + len(end)
            out.append('""' + "\n" * text.count("\n", i, j))
            i = j
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append('""' + "\n" * text.count("\n", i, j))
            i = j + 1
        elif c == "'" and (m := re.match(r"'(\\.[^']*|[^\\'])'", text[i:i + 12])):
            out.append("' '")
            i += m.end()
        else:
            out.append(c)
            i += 1
    return "".join(out)


def strip_test_modules(code: str) -> str:
    """Remove `#[cfg(test)] mod name { ... }` blocks (code already stripped)."""
    pattern = re.compile(r"#\[cfg\(test\)\]\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+\w+\s*\{")
    while m := pattern.search(code):
        depth, j = 1, m.end()
        while j < len(code) and depth:
            depth += {"{": 1, "}": -1}.get(code[j], 0)
            j += 1
        code = code[: m.start()] + "\n" * code.count("\n", m.start(), j) + code[j:]
    return code


def use_group_modules(group: str) -> list[str]:
    """First path segments of the top-level items of a `{...}` use group."""
    items, depth, cur = [], 0, ""
    for ch in group:
        if ch in "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        if ch == "," and depth == 0:
            items.append(cur)
            cur = ""
        else:
            cur += ch
    items.append(cur)
    mods = []
    for item in items:
        m = re.match(r"\s*(\w+)", item)
        if m and m.group(1) != "self":
            mods.append(m.group(1))
    return mods


def references(code: str) -> dict[str, int]:
    """Module name -> first line referencing `crate::<module>`."""
    refs: dict[str, int] = {}

    def add(name: str, pos: int) -> None:
        refs.setdefault(name, code.count("\n", 0, pos) + 1)

    for m in re.finditer(r"(?<![\w$])crate\s*::\s*(\w+|\{)", code):
        if m.group(1) != "{":
            add(m.group(1), m.start())
            continue
        depth, j = 1, m.end()
        while j < len(code) and depth:
            depth += {"{": 1, "}": -1}.get(code[j], 0)
            j += 1
        for name in use_group_modules(code[m.end(): j - 1]):
            add(name, m.start())
    return refs


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm (iterative); components in reverse topological order."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    comps: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, edges = work[-1]
            advanced = False
            for succ in edges:
                if succ not in index:
                    index[succ] = low[succ] = counter
                    counter += 1
                    stack.append(succ)
                    on_stack.add(succ)
                    work.append((succ, iter(sorted(graph[succ]))))
                    advanced = True
                    break
                if succ in on_stack:
                    low[node] = min(low[node], index[succ])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.append(w)
                    if w == node:
                        break
                comps.append(sorted(comp))
    return comps


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    src = Path(sys.argv[1])
    files = sorted(p for p in src.glob("*.rs") if p.stem not in ("lib", "main"))
    modules = {p.stem for p in files}
    graph: dict[str, set[str]] = {}
    where: dict[tuple[str, str], str] = {}
    for path in files:
        code = strip_test_modules(strip_comments_and_strings(path.read_text()))
        graph[path.stem] = set()
        for name, line in references(code).items():
            if name in modules and name != path.stem:
                graph[path.stem].add(name)
                where[(path.stem, name)] = f"{path}:{line}"
    cycles = [c for c in strongly_connected(graph) if len(c) > 1]
    edges = sum(len(v) for v in graph.values())
    if not cycles:
        print(f"{src}: {len(modules)} modules, {edges} dependencies, no cycle")
        return 0
    for k, comp in enumerate(sorted(cycles, key=lambda c: (-len(c), c)), 1):
        members = set(comp)
        print(f"cycle {k} ({len(comp)} modules): {' '.join(comp)}")
        for a in comp:
            for b in sorted(graph[a] & members):
                print(f"  {a} -> {b}  ({where[(a, b)]})")
    print(f"{src}: {len(cycles)} cycle(s) among {len(modules)} modules")
    return 1


if __name__ == "__main__":
    sys.exit(main())
