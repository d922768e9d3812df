"""The dependency rule and the clock port rule, checked on the source with `ast`."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
OUR_PACKAGES = {"domain", "adapters", "projections", "gateway", "reports", "infra", "tests", "bench",
                "testkit"}
NOT_PRODUCT = {"tests", "bench", "testkit"}

# What each part may not import, by its path. `infra` is the composition root: it may import
# anything of the product, but its workers run without a gateway. `tests` and `bench` share
# what both need through `testkit`, which imports neither.
FORBIDDEN = {
    "domain": OUR_PACKAGES - {"domain"},
    "adapters": {"projections", "gateway", "reports", "infra"} | NOT_PRODUCT,
    "projections": {"adapters", "gateway", "reports", "infra"} | NOT_PRODUCT,
    "gateway": {"adapters", "projections", "infra"} | NOT_PRODUCT,
    "reports": {"adapters", "gateway", "infra"} | NOT_PRODUCT,
    "infra": NOT_PRODUCT,
    "infra/workers": {"gateway"} | NOT_PRODUCT,
    "testkit": {"tests", "bench"},
    "tests": {"bench"},
    "bench": {"tests"},
}
# The pure model (every module of domain/ outside these) imports no application service and
# no port: services and ports are built on the model, never the other way round.
DOMAIN_OUTER = ("domain.services", "domain.ports")


def modules(package: str) -> list[Path]:
    return sorted(p for p in (ROOT / package).rglob("*.py") if ".venv" not in p.parts)


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """Every module a file imports, with relative imports resolved and import_module() calls."""
    return imports_in(path.read_text(), path.relative_to(ROOT).with_suffix("").parts[:-1])


def imports_in(source: str, package: tuple[str, ...]) -> list[tuple[int, str]]:
    tree = ast.parse(source)
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                found.append((node.lineno, ".".join([*base, node.module or ""]).strip(".")))
            else:
                found.append((node.lineno, node.module or ""))
        elif (isinstance(node, ast.Call) and _name(node.func) in {"import_module", "__import__"}
              and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)):
            found.append((node.lineno, node.args[0].value))
    return found


def _name(func: ast.expr) -> str:
    if isinstance(func, ast.Attribute):
        return func.attr
    return func.id if isinstance(func, ast.Name) else ""


def _dotted(expr: ast.expr) -> str:
    if isinstance(expr, ast.Attribute):
        return f"{_dotted(expr.value)}.{expr.attr}"
    return expr.id if isinstance(expr, ast.Name) else "?"


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_each_layer_imports_only_what_the_dependency_rule_allows(layer: str) -> None:
    files = modules(layer)
    assert files, f"{layer}/ has no modules: the rule would check nothing"
    violations = [
        f"{path.relative_to(ROOT)}:{line} imports {name}"
        for path in files for line, name in imported_modules(path)
        if name.split(".")[0] in FORBIDDEN[layer]
    ]
    assert not violations, f"{layer} must not import {sorted(FORBIDDEN[layer])}:\n" + "\n".join(
        violations)


def test_the_pure_model_imports_no_service_and_no_port() -> None:
    model = [p for p in modules("domain") if not module_name(p).startswith(DOMAIN_OUTER)]
    assert {p.name for p in model} >= {"budget.py", "keys.py", "money.py", "usage.py"}
    violations = [f"{path.relative_to(ROOT)}:{line} imports {name}"
                  for path in model for line, name in imported_modules(path)
                  if name.startswith(DOMAIN_OUTER)]
    assert not violations, "\n".join(violations)


def import_graph() -> dict[str, set[str]]:
    """Our modules and the modules of ours each imports (TYPE_CHECKING and late imports too)."""
    ours = {module_name(p): p for package in OUR_PACKAGES for p in modules(package)}
    graph: dict[str, set[str]] = {}
    for name, path in ours.items():
        targets = set()
        for _, imported in imported_modules(path):
            # `from a.b import c` names module a.b.c when c is a module, else a.b
            while imported and imported not in ours:
                imported = imported.rpartition(".")[0]
            if imported and imported != name and not name.startswith(imported + "."):
                targets.add(imported)
        graph[name] = targets
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one member (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycle_among_our_modules() -> None:
    assert not cycles(import_graph())


def test_no_import_cycle_among_our_top_level_packages() -> None:
    packages: dict[str, set[str]] = {}
    for name, targets in import_graph().items():
        packages.setdefault(name.split(".")[0], set()).update(t.split(".")[0] for t in targets)
    assert not cycles({p: t - {p} for p, t in packages.items()})


def test_the_cycle_finder_finds_a_cycle_through_three_modules() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_domain_exists_and_is_checked() -> None:
    names = {module_name(p) for p in modules("domain")}
    assert {"domain.budget", "domain.services.ledger", "domain.money", "domain.quota_policy",
            "domain.ports.bus"} <= names


SYSTEM_TIME_CALLS = {"datetime.now", "datetime.datetime.now", "datetime.utcnow", "datetime.today",
                     "date.today", "datetime.date.today", "time.time", "time.time_ns"}


def test_the_domain_reads_time_only_through_the_clock_port() -> None:
    violations = []
    for path in modules("domain"):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if not isinstance(node, ast.Call):
                continue
            called = _dotted(node.func)
            if called in SYSTEM_TIME_CALLS or called.endswith("utcnow"):
                violations.append(f"{path.relative_to(ROOT)}:{node.lineno} calls {called}()")
    assert not violations, "use the Clock port (an injected clock.now()):\n" + "\n".join(violations)


def test_the_domain_imports_no_time_function_directly() -> None:
    """`from time import time` would hide a system clock read from the check above."""
    violations = [
        f"{path.relative_to(ROOT)}:{node.lineno}"
        for path in modules("domain")
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.ImportFrom) and node.module == "time"
    ]
    assert not violations


def test_the_rule_checker_sees_relative_and_dynamic_imports() -> None:
    source = ("from ..adapters import eventstore\nfrom .budget import Budget\n"
              "def late():\n    import infra.config.env_settings\n"
              "importlib.import_module('gateway.app')\n")
    assert [name for _, name in sorted(imports_in(source, ("domain",)))] == [
        "adapters", "domain.budget", "infra.config.env_settings", "gateway.app"]


MAX_MODULE_LINES = 300


def test_every_module_is_under_300_lines() -> None:
    """A module that grows past this is doing more than one thing: split it by concern."""
    long = [f"{path.relative_to(ROOT)}: {n} lines"
            for package in sorted(OUR_PACKAGES) for path in modules(package)
            if (n := len(path.read_text().splitlines())) >= MAX_MODULE_LINES]
    assert not long, "\n".join(long)


@pytest.mark.parametrize("package", sorted(OUR_PACKAGES))
def test_every_top_level_package_has_a_readme(package: str) -> None:
    assert (ROOT / package / "README.md").is_file()


@pytest.mark.parametrize("port", sorted(p.stem for p in (ROOT / "domain" / "ports").glob("[!_]*.py")))
def test_each_port_names_adapters_and_a_contract_suite_that_exist(port: str) -> None:
    """A port's docstring promises its adapters and the suite they pass: hold it to that."""
    doc = ast.get_docstring(ast.parse((ROOT / "domain" / "ports" / f"{port}.py").read_text())) or ""
    named = re.findall(r"`((?:adapters|tests)/[\w/]+\.py)`", doc)
    assert any(n.startswith("adapters/") for n in named), f"{port}: names no adapter"
    assert any(n.startswith("tests/contract/") for n in named), f"{port}: names no contract suite"
    missing = [n for n in named if not (ROOT / n).is_file()]
    assert not missing, f"{port} names files that do not exist: {missing}"
    suite = next(ROOT / n for n in named if n.startswith("tests/contract/"))
    for adapter in (n for n in named if n.startswith("adapters/")):
        module = adapter.removesuffix(".py").replace("/", ".")
        assert module in suite.read_text(), f"{suite.name} does not test {module}"
