#!/usr/bin/env python3
"""Lists which modules of host/src each module imports, and checks that imports run one way.

Usage: python3 scripts/module-deps.py [--check]

A module is a top-level folder or file of host/src (`sink`, `source`, ...). With
--check, exits non-zero when a module imports one of a higher layer (LAYERS
below), or when the children of any folder (its files and subfolders) import
each other in a circle.
"""
import re
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "host" / "src"

# Lowest first. A module may import modules of its own layer or lower ones.
# (docs/architecture.md explains each layer.)
LAYERS = [
    ["position", "partitioner", "store", "telemetry", "clock", "jsonl", "sync", "failpoint"],
    ["log", "source", "runtime", "sink"],
    ["ingest", "consume", "pipeline", "report", "jobs", "emulate"],
    ["config", "admin"],
    ["app"],
    ["cli", "main", "lib"],
]
LAYER_OF = {m: i for i, layer in enumerate(LAYERS) for m in layer}

def module_of(path: Path) -> str:
    rel = path.relative_to(ROOT)
    return rel.parts[0].removesuffix(".rs")


PATH_START = re.compile(r"\b(crate|super|self)::")


def module_path(path: Path) -> list:
    """host/src/a/b/mod.rs -> [a, b]; host/src/a/c.rs -> [a, c]; host/src/lib.rs -> []."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] in ("mod", "lib", "main"):
        parts = parts[:-1]
    return parts


def split_top(items: str) -> list:
    """Split `a, b::{c, d}, e` at the commas outside braces."""
    out, depth, cur = [], 0, ""
    for ch in items:
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        if ch == "," and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    out.append(cur)
    return [o.strip() for o in out if o.strip()]


def expand(prefix: list, rest: str) -> list:
    """Absolute module paths named by `rest` (what follows `prefix::`), one per leaf."""
    rest = rest.strip()
    if rest.startswith("{"):
        depth, i = 0, 0
        for i, ch in enumerate(rest):
            depth += ch == "{"
            depth -= ch == "}"
            if depth == 0:
                break
        return [p for item in split_top(rest[1:i]) for p in expand(prefix, item)]
    m = re.match(r"[A-Za-z_][A-Za-z0-9_]*(?:::[A-Za-z_][A-Za-z0-9_]*)*(?:::\{)?", rest)
    if not m:
        return [prefix]
    text = m.group(0)
    if text.endswith("::{"):
        names = text[:-3].split("::")
        return expand(prefix + names, rest[len(text) - 1 :])
    return [prefix + text.split("::")]


def resolved_imports(path: Path, text: str) -> list:
    """Absolute paths (lists of names) of what the file imports from this crate."""
    here = module_path(path)
    found = []
    for m in PATH_START.finditer(text):
        kind, rest = m.group(1), text[m.end():]
        if kind == "crate":
            base = []
        elif kind == "self":
            base = here
        else:
            base = here[:-1]
            while rest.startswith("super::"):
                base = base[:-1]
                rest = rest[len("super::"):]
        found.extend(expand(base, rest))
    return found


def imports(text: str):
    """`(top module, second name)` pairs of the crate paths a file uses (layer check)."""
    found = set()
    for m in re.finditer(r"\bcrate::([a-z_]+)(?:::([a-z_]+))?", text):
        found.add((m.group(1), m.group(2)))
    for m in re.finditer(r"\bcrate::\{([^}]*)\}", text):
        for item in m.group(1).split(","):
            name = item.strip().split("::")[0]
            if name:
                found.add((name, None))
    return found


def code_of(path: Path) -> str:
    # Test modules and comments do not count as the module's dependencies.
    text = re.split(r"#\[cfg\(test\)\]", path.read_text())[0]
    return "\n".join(l for l in text.splitlines() if not l.lstrip().startswith("//"))


def folder_circles(files: dict) -> list:
    """Circles among the children of every folder: a child (file or subfolder)
    that imports a sibling which imports it back, directly or around a loop.
    A folder's mod.rs only declares and re-exports its children, so it is no node."""
    edges = defaultdict(lambda: defaultdict(set))  # folder path -> child -> children it imports
    for path, targets in files.items():
        here = module_path(path)
        for depth in range(len(here)):
            folder, child = tuple(here[:depth]), here[depth]
            for t in targets:
                if tuple(t[:depth]) == folder and len(t) > depth and t[depth] != child:
                    edges[folder][child].add(t[depth])
    bad = []
    for folder, graph in sorted(edges.items()):
        names = set(graph)
        graph = {c: {d for d in ds if d in names or (ROOT.joinpath(*folder, d).is_dir() or ROOT.joinpath(*folder, d + ".rs").exists())} for c, ds in graph.items()}
        state = {}

        def visit(node, stack):
            state[node] = "open"
            for nxt in sorted(graph.get(node, ())):
                if state.get(nxt) == "open":
                    where = "/".join(folder) or "src"
                    bad.append(f"{where}/ circle: " + " -> ".join(stack[stack.index(nxt):] + [nxt]))
                elif nxt not in state:
                    visit(nxt, stack + [nxt])
            state[node] = "done"

        for node in sorted(graph):
            if node not in state:
                visit(node, [node])
    return bad


def main() -> int:
    check = "--check" in sys.argv
    deps = defaultdict(set)
    files = {}
    for path in sorted(ROOT.rglob("*.rs")):
        if path.name in ("tests.rs",) or path.name.endswith("_tests.rs"):
            continue
        mod = module_of(path)
        text = code_of(path)
        files[path] = resolved_imports(path, text)
        for top, _ in imports(text):
            if top != mod:
                deps[mod].add(top)
        if mod not in deps:
            deps[mod] = deps[mod]

    bad = []
    width = max(len(m) for m in deps)
    print("module imports (layer: lowest 0)")
    for mod in sorted(deps, key=lambda m: (LAYER_OF.get(m, 99), m)):
        layer = LAYER_OF.get(mod, "?")
        print(f"  [{layer}] {mod:<{width}}  {', '.join(sorted(deps[mod])) or '-'}")
        for dep in deps[mod]:
            if dep in LAYER_OF and mod in LAYER_OF and LAYER_OF[dep] > LAYER_OF[mod]:
                bad.append(f"{mod} (layer {LAYER_OF[mod]}) imports {dep} (layer {LAYER_OF[dep]})")
            if mod in LAYER_OF and dep in LAYER_OF and LAYER_OF[dep] == LAYER_OF[mod] and mod in deps.get(dep, ()):
                bad.append(f"{mod} and {dep} import each other")
    bad.extend(folder_circles(files))

    if bad:
        print("\nimports against the layering:")
        for b in sorted(set(bad)):
            print("  " + b)
    else:
        print("\nno import runs upward, no two modules of a layer import each other, no circle inside any folder")
    return 1 if (check and bad) else 0


if __name__ == "__main__":
    sys.exit(main())
