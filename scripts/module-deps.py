#!/usr/bin/env python3
"""Lists which modules of host/src each module imports, and checks that imports run one way.

Usage: python3 scripts/module-deps.py [--check]

A module is a top-level folder or file of host/src (`sink`, `source`, ...); for
`runtime` its files are listed too, to show there is no circle inside it. With
--check, exits non-zero when a module imports one of a higher layer (LAYERS
below), or when the files of `runtime/` import each other in a circle.
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

USE = re.compile(r"\bcrate::([a-z_]+)(?:::([a-z_]+))?")
USE_GROUP = re.compile(r"\bcrate::\{([^}]*)\}")


def module_of(path: Path) -> str:
    rel = path.relative_to(ROOT)
    return rel.parts[0].removesuffix(".rs")


def imports(text: str):
    # Test modules and doc comments do not count as the module's dependencies.
    text = re.split(r"#\[cfg\(test\)\]", text)[0]
    text = "\n".join(l for l in text.splitlines() if not l.lstrip().startswith("//"))
    found = set()
    for m in USE.finditer(text):
        found.add((m.group(1), m.group(2)))
    for m in USE_GROUP.finditer(text):
        for item in m.group(1).split(","):
            name = item.strip().split("::")[0]
            if name:
                found.add((name, None))
    return found


def main() -> int:
    check = "--check" in sys.argv
    deps = defaultdict(set)
    runtime_files = defaultdict(set)
    for path in sorted(ROOT.rglob("*.rs")):
        if path.name in ("tests.rs",) or path.name.endswith("_tests.rs"):
            continue
        mod = module_of(path)
        text = path.read_text()
        for top, sub in imports(text):
            if top != mod:
                deps[mod].add(top)
            if mod == "runtime" and top == "runtime" and sub:
                here = path.stem if path.stem != "mod" else "mod"
                if sub != here:
                    runtime_files[here].add(sub)
        # `super::x` inside runtime/ counts too.
        if mod == "runtime" and path.parent == ROOT / "runtime":
            for m in re.finditer(r"\bsuper::([a-z_]+)", re.split(r"#\[cfg\(test\)\]", text)[0]):
                if m.group(1) != path.stem:
                    runtime_files[path.stem].add(m.group(1))
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

    print("\nruntime/ files import")
    for f in sorted(runtime_files):
        print(f"  {f:<10} {', '.join(sorted(runtime_files[f]))}")
    # Circles among runtime's files (mod.rs re-exports are not imports of its children).
    graph = {f: {d for d in ds if d != "mod"} for f, ds in runtime_files.items() if f != "mod"}
    state = {}

    def visit(node, stack):
        state[node] = "open"
        for nxt in graph.get(node, ()):
            if state.get(nxt) == "open":
                bad.append("runtime/ circle: " + " -> ".join(stack[stack.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])

    if bad:
        print("\nimports against the layering:")
        for b in sorted(set(bad)):
            print("  " + b)
    else:
        print("\nno import runs upward, no two modules of a layer import each other, no circle in runtime/")
    return 1 if (check and bad) else 0


if __name__ == "__main__":
    sys.exit(main())
