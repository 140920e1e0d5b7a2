"""The package's import graph has no cycle (module-level imports; a function-level import is a deliberate deferral)."""
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
        for node in ast.parse(path.read_text()).body:                      # module level only
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
