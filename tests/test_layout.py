"""The layout of aria_train follows the data path: a stage imports only from stages below it,
and only the conditioning stage imports aria_theory (the tracker mathematics)."""
import ast
from pathlib import Path

import aria_train

ROOT = Path(aria_train.__file__).parent
# low to high; a module may import its own stage and the stages listed before it
STAGES = [("console", "options", "assets", "device"), ("runs", "worlds"), ("diffusion",), ("data",), ("conditioning",),
          ("evaluation",), ("distill",), ("teacher",), ("experiment",), ("cli",)]
RANK = {name: rank for rank, names in enumerate(STAGES) for name in names}


def _stage(module: str) -> str:
    return module.split(".")[1]


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def _modules():
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        yield ".".join(p for p in parts if p != "__init__"), path


def test_every_stage_is_ranked():
    stages = {_stage(m) for m, _ in _modules() if m.count(".")}
    assert stages <= set(RANK), sorted(stages - set(RANK))


def test_imports_only_go_down_and_only_conditioning_knows_the_tracker():
    wrong = []
    for module, path in _modules():
        if not module.count("."):
            continue
        stage = _stage(module)
        for imported in _imports(path):
            if imported.startswith("aria_train."):
                if RANK[_stage(imported)] > RANK[stage]:
                    wrong.append(f"{module} imports {imported} (a later stage)")
            elif imported.split(".")[0] == "aria_theory" and stage != "conditioning":
                wrong.append(f"{module} imports {imported} (only conditioning/ may)")
    assert not wrong, "\n".join(wrong)


def _module_imports(path: Path, modules: dict) -> set[str]:
    """The aria_train modules a file imports; ``from package import submodule`` counts as the submodule."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module in modules:
            subs = {f"{node.module}.{a.name}" for a in node.names} & set(modules)
            found |= subs if len(subs) == len(node.names) else {node.module} | subs
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name in modules)
    return found


def test_no_import_cycle():
    modules = dict(_modules())
    graph = {m: {i for i in _module_imports(p, modules) if i != m} for m, p in modules.items()}
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path + [node, nxt]
            if nxt not in state:
                found = visit(nxt, path + [node])
                if found:
                    return found
        state[node] = 2
        return None

    for module in sorted(graph):
        if module not in state:
            cycle = visit(module, [])
            assert cycle is None, " -> ".join(cycle)
