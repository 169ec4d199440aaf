"""The code's shape: functions over a length, import cycles, long files, the arrows of indexing/.

    python bench/structure.py            # the repository this script sits in
    python bench/structure.py --root DIR --max-function 60 --max-file 250

Every import counts, those inside functions (lazy) and under TYPE_CHECKING included. Prints
what it finds and exits with 1 when a bar is broken: a function of model/, indexing/, explorer/
or app.py over --max-function lines (the `def` line to the last line of its body), a cycle of
imports among their modules, a file of explorer/ over --max-file lines, more than
--max-root-modules modules at the root of indexing/, or an import from indexing/'s store/
into another stage or from another stage into coco/ (the command that drives them). The
arrows between indexing/'s subpackages are listed either way.
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

PACKAGES = ("model", "indexing", "explorer")
# coco/ is a command that drives the others (downloads -> build): arrows from it to build/,
# store/ or scores/ are fine; one into it from another stage is broken, like one out of store/.
STAGES = ("build", "store", "query", "scores", "compare", "coco")


def module_files(root: Path) -> dict[str, Path]:
    """Dotted module name -> file, for the packages and app.py."""
    files = [f for p in PACKAGES for f in sorted((root / p).rglob("*.py"))] + [root / "app.py"]
    names = {}
    for f in files:
        parts = list(f.relative_to(root).with_suffix("").parts)
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f
    return names


def imported(tree: ast.AST) -> set[str]:
    """Every dotted name an import statement of the tree mentions (module, module.name)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
    return found


def long_functions(tree: ast.AST, limit: int) -> list[tuple[int, int, str]]:
    """(lines, first line, name) of the functions longer than `limit` lines."""
    return [
        (node.end_lineno - node.lineno + 1, node.lineno, node.name)
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno - node.lineno + 1 > limit
    ]


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index, low, on_stack, stack, found, counter = {}, {}, set(), [], [], 0
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            v, edges = work[-1]
            w = next(edges, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                component = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    component.append(w)
                    if w == v:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--root",
        type=Path,
        default=Path(__file__).resolve().parents[1],
        help="the repository (default: the one this script sits in)",
    )
    parser.add_argument("--max-function", type=int, default=60, help="lines; 60 (issue 23)")
    parser.add_argument("--max-file", type=int, default=250, help="lines of an explorer/ file")
    parser.add_argument("--max-root-modules", type=int, default=8, help="at indexing/'s root")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    root = args.root.resolve()
    modules = module_files(root)
    graph, too_long, arrows = {}, [], {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text())
        rel = path.relative_to(root)
        too_long += [
            (n, f"{rel}:{line} {fn}") for n, line, fn in long_functions(tree, args.max_function)
        ]
        deps = {m for m in imported(tree) if m in modules and m != name}
        graph[name] = {m for m in deps if not name.startswith(m + ".")}  # not its own package
        parts = name.split(".")
        if parts[0] == "indexing" and len(parts) > 2 and parts[1] in STAGES:
            for m in deps:
                target = m.split(".")
                if target[0] == "indexing" and len(target) > 1 and target[1] in STAGES:
                    if target[1] != parts[1]:
                        arrows.setdefault((parts[1], target[1]), set()).add(str(rel))
    found = cycles(graph)
    explorer = [
        (len(f.read_text().splitlines()), f) for f in sorted((root / "explorer").glob("*.py"))
    ]
    big = [(n, f.relative_to(root)) for n, f in explorer if n > args.max_file]
    at_root = sorted(f.name for f in (root / "indexing").glob("*.py"))
    upward = [(a, b) for a, b in arrows if a == "store" or b == "coco"]
    print(f"functions over {args.max_function} lines: {len(too_long)}")
    for n, where in sorted(too_long, reverse=True):
        print(f"  {n:4d} {where}")
    print(f"import cycles: {len(found)}")
    for component in found:
        print("  " + " <-> ".join(component))
    print(f"explorer/ files over {args.max_file} lines: {len(big)}")
    for n, rel in big:
        print(f"  {n:4d} {rel}")
    print(f"indexing/ root modules: {len(at_root)} ({', '.join(at_root)})")
    print("arrows between indexing/'s stages:")
    for (a, b), files in sorted(arrows.items()):
        print(f"  {a} -> {b}  ({', '.join(sorted(files))})")
    broken = too_long or found or big or len(at_root) > args.max_root_modules or upward
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
