"""The core stands alone: nothing outside world/, baselines/, the web app (ui/) and the command line that mounts
them imports the world, neither at module level nor inside a function."""

import ast
import subprocess
import sys
from pathlib import Path

import animatediff

PACKAGE = Path(animatediff.__file__).parent
CLIENTS = ("world", "baselines", "cli", "ui")  # may import the core; the core imports none of them
ENTRY = "__main__.py"  # `python -m animatediff`: the command line's


def core_modules() -> list[Path]:
    parts = (p.relative_to(PACKAGE).parts for p in PACKAGE.rglob("*.py"))
    return sorted(PACKAGE.joinpath(*q) for q in parts if q[0] not in (*CLIENTS, ENTRY))


def imported_names(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names += [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
    return names


def test_no_core_module_imports_a_client():
    modules = core_modules()
    assert len(modules) > 30 and PACKAGE / "pipeline" / "animation.py" in modules
    offending = {
        str(path.relative_to(PACKAGE)): name
        for path in modules
        for name in imported_names(path)
        if name.startswith(tuple(f"animatediff.{client}" for client in CLIENTS))
    }
    assert not offending


def test_importing_every_core_module_loads_no_client():
    names = [
        ".".join(("animatediff", *p.relative_to(PACKAGE).with_suffix("").parts)).removesuffix(".__init__")
        for p in core_modules()
    ]
    code = (
        "import importlib, sys\n"
        f"for name in {names!r}: importlib.import_module(name)\n"
        f"print(sorted(m for m in sys.modules if m.startswith({tuple(f'animatediff.{c}' for c in CLIENTS)!r})))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
