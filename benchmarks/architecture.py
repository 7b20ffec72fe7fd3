"""Figures of the package's arrangement: modules, their sizes, the longest functions, import arrows
between modules and any import cycle. Issue 21's before/after numbers come from here.

    python benchmarks/architecture.py            # the figures
    python benchmarks/architecture.py --arrows   # also every import arrow, module -> module

Read with `ast` (nothing is imported). An arrow is an import of one visionlab module by another,
at module level or inside a function; a cycle is a strongly connected set of two or more modules.
"""

from __future__ import annotations

import argparse
import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "visionlab"


# The layers, bottom first: a module imports only from its own layer or those below (no upward arrow).
LAYERS = {
    "visionlab": 0,
    "visionlab.errors": 0,
    "visionlab.config": 1,
    "visionlab.data": 2,
    "visionlab.models": 2,
    "visionlab.runs": 3,
    "visionlab.training": 4,
    "visionlab.report": 5,
    "visionlab.commands": 6,
    "visionlab.score": 6,  # `python -m visionlab.score`: the command's typed name
}


def layer(module: str) -> int | None:
    """The layer of `module`: that of its longest prefix in LAYERS (None: a module outside them)."""
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        if ".".join(parts[:n]) in LAYERS:
            return LAYERS[".".join(parts[:n])]
    return None


def upward(arrows) -> list[tuple[str, str]]:
    """Arrows from a lower layer to a higher one."""
    return sorted((a, b) for a, b in arrows if layer(a) is not None and layer(b) is not None and layer(b) > layer(a))


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imported(tree: ast.AST, name: str, is_package: bool, known: set[str]) -> set[str]:
    """The visionlab modules `name` imports (a `from x import y` counts y when y is a module)."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name in known}
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target in known:
                out.add(target)
            out |= {f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in known}
    out.discard(name)
    return out


def functions(tree: ast.AST) -> list[tuple[int, str]]:
    """(lines, qualified name) of every function and method."""
    found = []

    def visit(node, prefix):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                found.append((child.end_lineno - child.lineno + 1, prefix + child.name))
                visit(child, prefix + child.name + ".")
            elif isinstance(child, ast.ClassDef):
                visit(child, prefix + child.name + ".")

    visit(tree, "")
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of two or more modules (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

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
                out.append(sorted(comp))

    for v in graph:
        if v not in index:
            strong(v)
    return out


def survey() -> dict:
    mods = modules()
    known = set(mods)
    graph, sizes, funcs = {}, {}, []
    for name, path in mods.items():
        text = path.read_text(encoding="utf-8")
        tree = ast.parse(text)
        sizes[name] = len(text.splitlines())
        graph[name] = imported(tree, name, path.name == "__init__.py", known)
        funcs += [(n, f"{name}.{f}") for n, f in functions(tree)]
    # a package's __init__ importing its own submodules is how a package exposes them, not an arrow
    arrows = {(a, b) for a, bs in graph.items() for b in bs if not b.startswith(a + ".")}
    return {"sizes": sizes, "graph": graph, "arrows": arrows, "functions": sorted(funcs, reverse=True)}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arrows", action="store_true", help="list every import arrow")
    args = parser.parse_args(argv)
    s = survey()
    sizes, funcs = s["sizes"], s["functions"]
    top = [m for m in sizes if m.count(".") == 1]
    print(f"modules: {len(sizes)} ({len(top)} directly under visionlab/), {sum(sizes.values())} lines")
    print(
        "over 350 lines: "
        + (", ".join(f"{m} {n}" for m, n in sorted(sizes.items(), key=lambda x: -x[1]) if n > 350) or "none")
    )
    long = [(n, f) for n, f in funcs if n > 60]
    print(f"functions over 60 lines: {len(long)}" + "".join(f"\n  {n:4d} {f}" for n, f in long))
    print("longest functions: " + ", ".join(f"{f} {n}" for n, f in funcs[:5]))
    print(f"import arrows between modules: {len(s['arrows'])}")
    found = cycles({a: {b for x, b in s["arrows"] if x == a} for a in sizes})
    print("import cycles: " + ("; ".join(" <-> ".join(c) for c in found) or "none"))
    up = upward(s["arrows"])
    print(f"upward imports: {len(up)}" + "".join(f"\n  {a} -> {b}" for a, b in up))
    if args.arrows:
        for a, b in sorted(s["arrows"]):
            print(f"  {a} -> {b}")


if __name__ == "__main__":
    main()
