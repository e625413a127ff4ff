#!/usr/bin/env python3
"""A flame graph (SVG) from `perf script` output, with no other tool installed.

Usage: perf script -i perf.data | scripts/flamegraph.py "title" > flame.svg
       perf script -i perf.data | scripts/flamegraph.py --folded > stacks.txt

Stacks are folded root first (thread name at the root, as perf's `comm`);
frames narrower than 0.1% of the samples are left out of the picture.
"""
import html
import re
import sys
from collections import defaultdict


def folded(lines):
    """Yield `frame;frame;...` per sample, root first."""
    comm, frames = None, []
    for line in lines:
        line = line.rstrip("\n")
        if not line.strip():
            if comm is not None:
                yield ";".join([comm] + list(reversed(frames)))
            comm, frames = None, []
            continue
        if comm is None:
            comm = line.split()[0]
            continue
        parts = line.strip().split(maxsplit=1)
        name = parts[1] if len(parts) > 1 else parts[0]
        name = re.sub(r"\+0x[0-9a-f]+", "", name)
        name = re.sub(r" \(.*\)$", "", name)
        name = re.sub(r"::h[0-9a-f]{16}$", "", name)
        frames.append(name)
    if comm is not None:
        yield ";".join([comm] + list(reversed(frames)))


def tree(stacks):
    root = {"n": 0, "c": {}}
    for s in stacks:
        node = root
        node["n"] += 1
        for f in s.split(";"):
            node = node["c"].setdefault(f, {"n": 0, "c": {}})
            node["n"] += 1
    return root


def color(name):
    h = sum(map(ord, name)) % 60
    if name.startswith("wasm["):
        return f"rgb(80,{140 + h},220)"
    if name.startswith("[k]") or "_k_" in name or name.islower() and "::" not in name and "_" in name:
        return f"rgb(230,{120 + h},60)"
    return f"rgb(240,{100 + h * 2},{40 + h})"


def svg(root, title, width=1600, row=16):
    total = root["n"] or 1
    rects, depth = [], [0]

    def walk(node, name, x, level):
        w = node["n"] / total * width
        if w < width * 0.001:
            return
        depth[0] = max(depth[0], level)
        rects.append((x, level, w, name, node["n"]))
        cx = x
        for child_name, child in sorted(node["c"].items()):
            walk(child, child_name, cx, level + 1)
            cx += child["n"] / total * width

    walk(root, "all", 0, 0)
    height = (depth[0] + 3) * row
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="monospace" font-size="11">',
        f'<text x="4" y="{row - 3}">{html.escape(title)} ({total} samples; hover for the share)</text>',
    ]
    for x, level, w, name, n in rects:
        y = height - (level + 1) * row
        label = html.escape(name)
        chars = int(w / 7)
        text = label[:chars] if chars > 2 else ""
        out.append(
            f'<g><title>{label}: {n} samples, {100 * n / total:.1f}%</title>'
            f'<rect x="{x:.1f}" y="{y}" width="{max(w - 0.5, 0.5):.1f}" height="{row - 1}" fill="{color(name)}"/>'
            f'<text x="{x + 2:.1f}" y="{y + row - 4}">{text}</text></g>'
        )
    out.append("</svg>")
    return "\n".join(out)


def main():
    args = sys.argv[1:]
    stacks = list(folded(sys.stdin))
    if args and args[0] == "--folded":
        counts = defaultdict(int)
        for s in stacks:
            counts[s] += 1
        for s, n in sorted(counts.items(), key=lambda kv: -kv[1]):
            print(f"{s} {n}")
        return
    print(svg(tree(stacks), args[0] if args else "flame graph"))


if __name__ == "__main__":
    main()
