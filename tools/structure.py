"""The project's shape in figures: import circles, imports against the floors, imports inside
functions, long files and functions, and modality branches outside their place.

    python -m tools.structure            # the figures
    python -m tools.structure --details  # and every offending import, file and function

``tests/test_structure.py`` holds the rules these figures must keep (README "Layout").
"""

from __future__ import annotations

import argparse
import ast
import re
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "fewshot_demo"
#: The floors, bottom first: a module may import from its own floor or any floor below it.
FLOORS = (
    ("fewshot_demo.config",),
    ("fewshot_demo.runtime",),
    ("fewshot_demo.data",),
    ("fewshot_demo.encoders",),
    ("fewshot_demo.methods",),
    ("fewshot_demo.core",),
    ("fewshot_demo.training", "fewshot_demo.train"),
    ("fewshot_demo.bench",),
    ("fewshot_demo.api", "fewshot_demo.serving", "fewshot_demo"),
    ("fewshot_demo.ui",),
    ("app", "tools"),
)
#: Where an ``== "image"`` / ``== "text"`` branch may stand: the encoders and the two tabs.
MODALITY_BRANCHES_ALLOWED = ("fewshot_demo/encoders/", "fewshot_demo/ui/image_tab", "fewshot_demo/ui/text_tab")
MODALITY_BRANCH = re.compile(r"""(==|!=)\s*["'](image|text)["']|["'](image|text)["']\s*(==|!=)""")


@dataclass
class Module:
    name: str
    path: Path
    lines: int
    imports: dict[str, list[tuple[int, bool]]] = field(default_factory=dict)  # target -> [(line, inside a function)]
    functions: list[tuple[str, int, int]] = field(default_factory=list)  # (qualified name, line, length)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def floor_of(name: str) -> int:
    """The floor of a module: the one whose longest prefix names it."""
    best, length = -1, -1
    for number, prefixes in enumerate(FLOORS):
        for prefix in prefixes:
            if (name == prefix or name.startswith(prefix + ".")) and len(prefix) > length:
                best, length = number, len(prefix)
    return best


def _resolve(target: str, modules: dict[str, Module]) -> str | None:
    parts = target.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in modules:
            return candidate
    return None


def _inside(node: ast.AST, parents: dict[ast.AST, ast.AST], kinds: tuple[type, ...]) -> bool:
    while node in parents:
        node = parents[node]
        if isinstance(node, kinds):
            return True
    return False


def read_modules() -> dict[str, Module]:
    """Every module of the package, app.py and tools/, with its imports and functions."""
    paths = sorted((ROOT / PACKAGE).rglob("*.py")) + [ROOT / "app.py"] + sorted((ROOT / "tools").glob("*.py"))
    modules = {module_name(p): Module(module_name(p), p, len(p.read_text().splitlines())) for p in paths if p.exists()}
    functions = (ast.FunctionDef, ast.AsyncFunctionDef)
    for module in modules.values():
        tree = ast.parse(module.path.read_text())
        parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
        package = module.name if module.path.name == "__init__.py" else module.name.rpartition(".")[0]
        for node in ast.walk(tree):
            if isinstance(node, functions):
                owner = parents.get(node)
                prefix = f"{owner.name}." if isinstance(owner, ast.ClassDef) else ""
                module.functions.append((prefix + node.name, node.lineno, node.end_lineno - node.lineno + 1))
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
                targets = [f"{base}.{alias.name}" for alias in node.names]
            else:
                continue
            for target in targets:
                resolved = _resolve(target, modules)
                if resolved is not None and resolved != module.name:
                    module.imports.setdefault(resolved, []).append((node.lineno, _inside(node, parents, functions)))
    return modules


def circles(modules: dict[str, Module]) -> list[list[str]]:
    """Groups of modules that import each other in a loop (Tarjan's strongly connected components)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(name: str) -> None:
        index[name] = low[name] = len(index)
        stack.append(name)
        for target in modules[name].imports:
            if target not in index:
                visit(target)
                low[name] = min(low[name], low[target])
            elif target in stack:
                low[name] = min(low[name], index[target])
        if low[name] == index[name]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == name:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for name in modules:
        if name not in index:
            visit(name)
    return found


@dataclass
class Figures:
    circles: list[list[str]]
    upward: list[str]
    inside_functions: list[str]
    long_files: list[str]
    long_functions: list[str]
    long_builders: list[str]
    modality_branches: list[str]


def measure(file_lines: int = 400, function_lines: int = 100, builder_lines: int = 80) -> Figures:
    """The figures, with the offenders named (``module:line`` and what)."""
    modules = read_modules()
    upward, inside = [], []
    for module in modules.values():
        for target, places in module.imports.items():
            for line, in_function in places:
                where = f"{module.path.relative_to(ROOT)}:{line} -> {target}"
                if floor_of(target) > floor_of(module.name) and where not in upward:
                    upward.append(where)
                if in_function and where not in inside:
                    inside.append(where)
    long_files, long_functions, long_builders, branches = [], [], [], []
    for module in modules.values():
        relative = module.path.relative_to(ROOT).as_posix()
        if module.lines > file_lines:
            long_files.append(f"{relative}: {module.lines} lines")
        for name, line, length in module.functions:
            if length > function_lines:
                long_functions.append(f"{relative}:{line} {name}: {length} lines")
            if relative.startswith("fewshot_demo/ui/") and name.split(".")[-1].startswith("build") and length > builder_lines:
                long_builders.append(f"{relative}:{line} {name}: {length} lines")
        if not relative.startswith(MODALITY_BRANCHES_ALLOWED):
            for number, text in enumerate(module.path.read_text().splitlines(), 1):
                if MODALITY_BRANCH.search(text.split("#")[0]):
                    branches.append(f"{relative}:{number}: {text.strip()}")
    return Figures(circles(modules), upward, inside, long_files, long_functions, long_builders, branches)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.structure", description=__doc__.split("\n\n")[0])
    parser.add_argument("--details", action="store_true", help="name every offender")
    args = parser.parse_args(argv)
    figures = measure()
    for label, items in (("import circles", figures.circles), ("imports against the floors", figures.upward),
                         ("project imports inside functions", figures.inside_functions),
                         ("files over 400 lines", figures.long_files),
                         ("functions over 100 lines", figures.long_functions),
                         ("UI builders over 80 lines", figures.long_builders),
                         ("modality branches outside encoders/ and the two tabs", figures.modality_branches)):
        print(f"{label}: {len(items)}")
        if args.details:
            for item in items:
                print(f"    {item}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
