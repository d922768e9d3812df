"""The dependency rule and the clock port rule, checked on the source with `ast`."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
OUR_PACKAGES = {"domain", "adapters", "projections", "gateway", "reports", "infra", "tests", "bench"}

# What each layer may not import; `infra` is the composition root and may import anything.
FORBIDDEN = {
    "domain": OUR_PACKAGES - {"domain"},
    "gateway": {"adapters", "infra"},
    "projections": {"adapters", "infra"},
    "reports": {"adapters", "infra"},
}


def modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


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
    if not files:
        pytest.skip(f"{layer}/ has no modules yet")
    violations = [
        f"{path.relative_to(ROOT)}:{line} imports {name}"
        for path in files for line, name in imported_modules(path)
        if name.split(".")[0] in FORBIDDEN[layer]
    ]
    assert not violations, f"{layer} must not import {sorted(FORBIDDEN[layer])}:\n" + "\n".join(
        violations)


def test_the_domain_exists_and_is_checked() -> None:
    names = {p.name for p in modules("domain")}
    assert {"budget.py", "ledger.py", "money.py", "quota_policy.py"} <= names


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
              "def late():\n    import infra.settings\n"
              "importlib.import_module('gateway.app')\n")
    assert [name for _, name in sorted(imports_in(source, ("domain",)))] == [
        "adapters", "domain.budget", "infra.settings", "gateway.app"]
