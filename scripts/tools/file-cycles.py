#!/usr/bin/env python3
"""Import cycles between the files of a Rust crate, at every level of its
module tree.

Usage: file-cycles.py SRC_DIR

Reads every `.rs` file below SRC_DIR, finds the paths it names (`use`
statements with their `{...}` groups expanded, and inline `crate::`,
`super::` and `self::` paths), and resolves each to the module it points
into. Two modules that are siblings somewhere in the tree (children of the
same parent: `billing/store.rs` and `billing/service/`, or `auth.rs` and
`tenancy.rs`) are units at that level; a reference from anywhere inside one
unit to anywhere inside the other is an edge between them. A module and its
own submodules are one unit (a parent re-exporting its children, and a
child using its parent's types, is not a cycle). Prints every cycle among
the units of each level with the files behind each edge, and exits 1 when
there is one.

`python3 ../shared/tools/module-cycles.py` checks the top level only; this
checks every level, so a circle inside `billing/` shows too.
"""

import os
import re
import sys


def module_path(src, path):
    rel = os.path.relpath(path, src)[: -len(".rs")].split(os.sep)
    if rel[-1] == "mod" or (len(rel) == 1 and rel[0] in ("lib", "main")):
        rel = rel[:-1]
    return tuple(rel)


def expand(tree):
    """`a::{b, c::{d, e}}` -> [a::b, a::c::d, a::c::e]."""
    tree = tree.strip()
    depth, start = 0, None
    for i, ch in enumerate(tree):
        if ch == "{":
            if depth == 0:
                start = i
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                prefix, inner, rest = tree[:start], tree[start + 1 : i], tree[i + 1 :]
                parts, depth2, cur = [], 0, ""
                for c in inner:
                    if c == "," and depth2 == 0:
                        parts.append(cur)
                        cur = ""
                        continue
                    depth2 += c == "{"
                    depth2 -= c == "}"
                    cur += c
                parts.append(cur)
                out = []
                for part in parts:
                    if part.strip():
                        out.extend(expand(prefix + part.strip() + rest))
                return out
    return [tree]


def resolve(path, here, modules):
    """The module `path` (a `::` path written in module `here`) points into."""
    segs = [s for s in path.replace(" ", "").split("::") if s]
    if not segs:
        return None
    if segs[0] == "crate":
        base, segs = (), segs[1:]
    elif segs[0] in ("super", "self"):
        base = here
        while segs and segs[0] in ("super", "self"):
            if segs[0] == "super":
                base = base[:-1]
            segs = segs[1:]
    else:
        return None
    best = base
    for n in range(1, len(segs) + 1):
        cand = base + tuple(segs[:n])
        if cand in modules:
            best = cand
    return best


def main():
    src = sys.argv[1]
    files = []
    for root, _, names in os.walk(src):
        files += [os.path.join(root, n) for n in names if n.endswith(".rs")]
    modules = {module_path(src, f) for f in files}
    edges = {}  # (level, unit) -> {unit: {files}}
    for f in sorted(files):
        here = module_path(src, f)
        text = open(f, encoding="utf-8", errors="replace").read()
        text = re.sub(r"//[^\n]*", "", text)
        paths = []
        for stmt in re.findall(r"\buse\s+([^;]+);", text, re.S):
            paths += expand(stmt)
        paths += re.findall(r"\b(?:crate|super|self)(?:::[A-Za-z_][A-Za-z0-9_]*)+", text)
        for p in paths:
            target = resolve(p, here, modules)
            if target is None:
                continue
            common = 0
            while common < min(len(here), len(target)) and here[common] == target[common]:
                common += 1
            if common == len(here) or common == len(target):
                continue  # a module and its own submodules are one unit
            level = here[:common]
            a, b = here[common], target[common]
            edges.setdefault((level, a), {}).setdefault(b, set()).add(os.path.relpath(f, src))
    cycles = 0
    levels = sorted({level for level, _ in edges})
    sys.setrecursionlimit(10000)
    for level in levels:
        graph = {u: set(t) for (lv, u), t in edges.items() if lv == level}
        index, low, stack, on, counter = {}, {}, [], set(), [0]

        def strong(v):
            index[v] = low[v] = counter[0]
            counter[0] += 1
            stack.append(v)
            on.add(v)
            for w in graph.get(v, ()):
                if w not in index:
                    strong(w)
                    low[v] = min(low[v], low[w])
                elif w in on:
                    low[v] = min(low[v], index[w])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    report(level, sorted(comp))

        def report(level, comp):
            nonlocal cycles
            cycles += 1
            where = "/".join(level) or "(crate root)"
            print(f"cycle in {where}: " + " <-> ".join(comp))
            for a in comp:
                for b in comp:
                    refs = edges.get((level, a), {}).get(b)
                    if refs:
                        print(f"  {a} -> {b}: {', '.join(sorted(refs)[:4])}")

        for v in sorted(graph):
            if v not in index:
                strong(v)
    print(f"{cycles} cycle(s) among the files of {src}, at every level of its module tree")
    sys.exit(1 if cycles else 0)


main()
