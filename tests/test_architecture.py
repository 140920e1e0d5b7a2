"""The package's import graph has no cycle at any depth: module-level imports, imports inside functions (a deferral
is still a dependency) and typing-only imports all count."""
import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "cryorl"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        edges = set()
        for node in ast.walk(ast.parse(path.read_text())):                 # every import, at any depth
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("cryorl"):
                for alias in node.names:                                    # `from pkg import submodule`
                    target = f"{node.module}.{alias.name}"
                    edges.add(target if target in modules else node.module)
            elif isinstance(node, ast.Import):
                edges |= {a.name for a in node.names if a.name in modules}
        graph[name] = {e for e in edges if e in modules and e != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if not state.get(nxt) and (cycle := visit(nxt, stack)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if not state.get(node) and (cycle := visit(node, [])):
            return cycle
    return None


def test_the_import_graph_has_no_cycle():
    graph = import_graph()
    assert len(graph) > 40 and "cryorl.perception.registry" in graph["cryorl.perception.resnet"]
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))
    # and the check sees one where there is one
    assert find_cycle({**graph, "cryorl.perception.registry": {"cryorl.perception.resnet"}})


def test_a_planted_function_level_cycle_is_found(tmp_path, monkeypatch):
    """An import inside a function that closes a loop is a cycle too (the deferral only hides it at start-up)."""
    import shutil

    package = tmp_path / "cryorl"
    shutil.copytree(PACKAGE, package, ignore=shutil.ignore_patterns("__pycache__", "resources"))
    render = package / "render.py"
    render.write_text(render.read_text() + "\n\ndef _planted():\n    from cryorl.reporting import plots  # noqa\n")
    monkeypatch.setattr(__import__(__name__), "PACKAGE", package)
    cycle = find_cycle(import_graph())
    assert cycle is not None and "cryorl.render" in cycle and "cryorl.reporting.plots" in cycle


MAX_FUNCTION_LINES = 60


def long_functions(root: Path) -> list[str]:
    """Functions and methods longer than MAX_FUNCTION_LINES whose docstring does not say why ("Long because")."""
    found = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES and "Long because" not in (ast.get_docstring(node) or ""):
                    found.append(f"{path.relative_to(root.parent)}:{node.lineno} {node.name} ({lines} lines)")
    return found


def test_no_function_is_over_60_lines_without_a_reason():
    assert long_functions(PACKAGE) == []


def test_a_planted_long_function_is_found_and_a_reason_lets_it_pass(tmp_path):
    package = tmp_path / "cryorl"
    package.mkdir()
    body = "".join(f"    x{i} = {i}\n" for i in range(MAX_FUNCTION_LINES))
    (package / "long.py").write_text(f"def long():\n{body}")
    assert long_functions(package) == ["cryorl/long.py:1 long (61 lines)"]
    (package / "long.py").write_text(f'def long():\n    """Long because a table is written out."""\n{body}')
    assert long_functions(package) == []
