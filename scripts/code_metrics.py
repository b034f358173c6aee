"""The seams measure of issue #16, from the source alone: import circles between cnnlab modules, functions over 40
lines, imports inside functions, and the length of two modules. Run at any commit to compare:

    python scripts/code_metrics.py                 # the working tree
    python scripts/code_metrics.py --rev da499df   # a commit, read with `git show` (nothing is checked out)

An import circle is a pair of modules that import each other (at module top or inside functions); a package's
`__init__` importing its own submodule is not counted. Duplicated blocks are the tool library's `duplicates`.

Issue #28 adds two measures of where a metric's name lives. A module *spells* a metric when a string literal in it is
exactly the metric's name (docstrings and comments do not count); the names are the catalogue's
(`cnnlab.training.metrics`, read from the working tree, so an older commit is measured against today's names). A
*side list* is a module-level table (tuple, list, set or dict) whose literal items or keys include two or more metric
names: a second list kept in step by hand.
"""

from __future__ import annotations

import argparse
import ast
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WATCHED = ("src/cnnlab/analysis/common.py", "src/cnnlab/experiments/store.py")
CATALOGUE = "cnnlab.training.metrics"  # the one module meant to spell every metric name


def sources(rev: str | None) -> dict:
    """{module name: source text} of every file under src/cnnlab."""
    if rev is None:
        files = {str(p.relative_to(ROOT)): p.read_text() for p in (ROOT / "src/cnnlab").rglob("*.py")}
    else:
        names = subprocess.run(["git", "ls-tree", "-r", "--name-only", rev, "src/cnnlab"], cwd=ROOT, check=True,
                               capture_output=True, text=True).stdout.split()
        files = {n: subprocess.run(["git", "show", f"{rev}:{n}"], cwd=ROOT, check=True, capture_output=True,
                                   text=True).stdout for n in names if n.endswith(".py")}
    return {_module(path): (path, text) for path, text in files.items()}


def _module(path: str) -> str:
    parts = Path(path).with_suffix("").parts[1:]  # drop "src"
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _inner_imports(tree: ast.AST, text: str, module: str) -> tuple:
    """(imports inside functions, those of them with no comment saying why). Each import statement counts once
    (one in a nested function is not counted again for the outer one). An import says why when its line ends in a
    comment, or when a comment line (or a `try:  # ...` guarding an optional import) stands directly above it or above
    the run of import lines it belongs to (one comment for a function's group of imports)."""
    lines = text.splitlines()
    inner = {id(n): n for fn in ast.walk(tree) if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef))
             for n in ast.walk(fn) if isinstance(n, (ast.Import, ast.ImportFrom))}
    taken = {i for n in inner.values() for i in range(n.lineno, n.end_lineno + 1)}  # lines held by those imports
    bare = []
    for n in inner.values():
        if "#" in lines[n.end_lineno - 1]:
            continue
        above = n.lineno - 1  # walk up over the imports of the same run
        while above in taken:
            above -= 1
        line = lines[above - 1].strip() if above >= 1 else ""
        if not (line.startswith("#") or (line.startswith("try:") and "#" in line)):
            bare.append(f"{module}:{n.lineno}")
    return len(inner), sorted(bare)


def _imports(tree: ast.AST, module: str, is_package: bool) -> set:
    """The cnnlab modules imported anywhere (at module top or inside functions)."""
    found = set()
    base = module.split(".") if is_package else module.split(".")[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            target = ".".join(base[:len(base) - node.level + 1] + ([node.module] if node.module else [])) \
                if node.level else node.module
            found.add(target)
            found.update(f"{target}.{a.name}" for a in node.names)  # `from pkg import submodule`
    return {m for m in found if m and m.startswith("cnnlab")}


def metric_names() -> tuple:
    """The catalogue's metric names, read from the working tree's source (no cnnlab import: nothing runs)."""
    tree = ast.parse((ROOT / "src/cnnlab/training/metrics.py").read_text())
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", None) == "Metric"]
    return tuple(c.args[0].value for c in calls if c.args and isinstance(c.args[0], ast.Constant))


def _strings(tree: ast.AST) -> set:
    """String literals of a module that are not docstrings."""
    docs = {id(n.body[0].value) for n in ast.walk(tree)
            if isinstance(n, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and n.body
            and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
    return {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)
            and id(n) not in docs}


def _side_lists(tree: ast.AST, module: str, names: set) -> list:
    """Module-level tables whose literal items (or keys) hold two or more metric names."""
    out = []
    for node in tree.body:
        value = node.value if isinstance(node, (ast.Assign, ast.AnnAssign)) else None
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Tuple):
            continue  # NAME_A, NAME_B = "a", "b": constants, one name each
        items = value.keys if isinstance(value, ast.Dict) else value.elts \
            if isinstance(value, (ast.Tuple, ast.List, ast.Set)) else []
        hits = [i.value for i in items if isinstance(i, ast.Constant) and i.value in names]
        if len(hits) >= 2:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            out.append(f"{module}.{getattr(targets[0], 'id', '?')} ({len(hits)})")
    return out


def measure(rev: str | None) -> dict:
    mods = sources(rev)
    graph, inner, bare, long_functions = {}, 0, [], []
    catalogue = metric_names()
    spelled, side_lists = {m: [] for m in catalogue}, []
    for name, (path, text) in mods.items():
        tree = ast.parse(text)
        for m in set(catalogue) & _strings(tree):
            spelled[m].append(name)
        side_lists += _side_lists(tree, name, set(catalogue))
        deps = _imports(tree, name, path.endswith("__init__.py"))
        graph[name] = {d for d in deps if d in mods and d != name}
        n, why_not = _inner_imports(tree, text, name)
        inner += n
        bare += why_not
        for fn in ast.walk(tree):
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)) and fn.end_lineno - fn.lineno + 1 > 40:
                long_functions.append(f"{name}.{fn.name} ({fn.end_lineno - fn.lineno + 1})")
    circles = sorted({tuple(sorted((a, b))) for a in graph for b in graph[a]
                      if a in graph.get(b, ()) and not (b.startswith(a + ".") or a.startswith(b + "."))})
    lines = {}
    for path in WATCHED:
        text = next((t for p, t in mods.values() if p == path), None)
        lines[path] = None if text is None else len(text.splitlines())
    return {"circles": circles, "long_functions": sorted(long_functions), "inner_imports": inner, "bare_imports": bare,
            "lines": lines,
            "spelled": {m: sorted(ms) for m, ms in spelled.items()}, "side_lists": sorted(side_lists)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rev", help="a git commit to measure instead of the working tree")
    ap.add_argument("--list", action="store_true",
                    help="also list the circles, the long functions, the side lists and who spells each metric")
    args = ap.parse_args()
    m = measure(args.rev)
    print(f"{args.rev or 'working tree'}: import circles {len(m['circles'])}, functions over 40 lines "
          f"{len(m['long_functions'])}, in-function imports {m['inner_imports']} ({len(m['bare_imports'])} without a "
          "comment saying why), "
          + ", ".join(f"{Path(p).name} {n} lines" for p, n in m["lines"].items()))
    # the catalogue itself spells every name once: count the modules besides it
    spread = sorted(((len([x for x in ms if x != CATALOGUE]), n) for n, ms in m["spelled"].items()), reverse=True)
    print(f"metric names: {len(spread)}, spelled (besides the catalogue) in more than one module "
          f"{sum(k > 1 for k, _ in spread)}, in none {sum(k == 0 for k, _ in spread)}, side lists of metric names "
          f"{len(m['side_lists'])}; modules spelling each besides the catalogue: "
          + ", ".join(f"{n} {k}" for k, n in spread))
    if args.list:
        for s in m["side_lists"]:
            print("  side list:", s)
        for n, ms in m["spelled"].items():
            if ms:
                print(f"  spelled: {n}: {', '.join(ms)}")
        for c in m["circles"]:
            print("  circle:", " <-> ".join(c))
        for f in m["long_functions"]:
            print("  long:", f)
        for f in m["bare_imports"]:
            print("  import without why:", f)


if __name__ == "__main__":
    main()
