"""The package's shape: rooms on floors, imports only downward, no import-time policy.

The floors are written once, here and in docs/layout.md: a module may import its own room
and the rooms on lower floors, never a room beside it or above it.
"""

import ast
import logging
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from ._paths import REPO

PACKAGE = REPO / "resnext_det"

# Room -> floor. A room is a subpackage or a top-level module of resnext_det.
FLOORS = {
    "utils": 0,  # errors, atomic writes, value checks, safe unpickler, tool entry
    "config": 1,
    "modeling": 2,
    "checkpoint": 3,
    "data": 3,
    "registration": 3,
    "model_zoo": 4,
    "analysis": 4,
    "deploy": 4,
    "training": 5,  # what both engines share: hooks
    "engine": 6,  # detection
    "pretrain": 6,  # classification
}


def _room(module: str) -> str:
    """``resnext_det.engine.trainer`` -> ``engine``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _module_name(path: Path, root: Path = REPO) -> str:
    relative = path.relative_to(root).with_suffix("")
    parts = list(relative.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path, root: Path = REPO) -> list[str]:
    """Every resnext_det module that ``path`` imports, as absolute names."""
    module = _module_name(path, root)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            # `from . import x` names submodules; `from .a import b` the module a.
            found += [f"{target}.{a.name}" for a in node.names] if not node.module else [target]
    return [name for name in found if name.split(".")[0] == "resnext_det"]


def _package_modules() -> list[Path]:
    return [
        p for p in sorted(PACKAGE.rglob("*.py")) if "configs" not in p.relative_to(PACKAGE).parts
    ]


def test_every_room_has_a_floor():
    rooms = {_room(_module_name(p)) for p in _package_modules()} - {""}
    assert rooms <= set(FLOORS), f"rooms without a floor: {sorted(rooms - set(FLOORS))}"


def test_imports_only_go_downward():
    upward = []
    for path in _package_modules():
        source = _room(_module_name(path))
        if not source:  # resnext_det/__init__.py: the public names, loaded on first use
            continue
        for target in _imports(path):
            room = _room(target)
            if room and room != source and FLOORS[room] >= FLOORS[source]:
                upward.append(f"{path.relative_to(REPO)} imports {target}")
    assert not upward, "imports sideways or upward:\n" + "\n".join(upward)


def test_the_layering_check_sees_an_upward_import(tmp_path):
    # The check above must be able to fail: an analysis module importing the engine.
    bad = tmp_path / "resnext_det" / "analysis" / "bad.py"
    bad.parent.mkdir(parents=True)
    bad.write_text("from ..engine.trainer import Trainer\nfrom .paper import TABLES\n")
    names = _imports(bad, root=tmp_path)
    assert names == ["resnext_det.engine.trainer", "resnext_det.analysis.paper"]
    assert FLOORS[_room(names[0])] > FLOORS["analysis"]


def _fresh_python_prints(code: str) -> list[str]:
    """What ``code`` prints in a new interpreter (nothing imported yet), as words."""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    )
    return out.stdout.split()


@pytest.mark.parametrize(
    "module", ["resnext_det", "resnext_det.engine", "resnext_det.checkpoint", "resnext_det.data"]
)
def test_importing_the_package_sets_no_policy(module):
    # Warning filters and log filters are the tools' choice (set_tool_policy), not a side
    # effect of importing a library.
    code = (
        "import logging, warnings\n"
        f"import {module}\n"
        "from resnext_det import register_resnext_backbone\n"
        "ours = [f for f in warnings.filters if f[1] is not None and "
        "any(m in f[1].pattern for m in ('jit.script', 'meshgrid'))]\n"
        "loop = logging.getLogger('detectron2.engine.train_loop')\n"
        "print(ours == [], loop.filters == [])"
    )
    assert _fresh_python_prints(code) == ["True", "True"]


def test_set_tool_policy_quiets_detectron2_and_filters_user_error_tracebacks():
    from resnext_det.utils.cli import set_tool_policy
    from resnext_det.utils.errors import ConfigError

    saved = list(warnings.filters)
    loop = logging.getLogger("detectron2.engine.train_loop")
    try:
        set_tool_policy()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("default")
            set_tool_policy()  # on top of "default", as a tool's own filters would be
            warnings.warn("`torch.jit.script` is deprecated.", FutureWarning, stacklevel=1)
        assert caught == []
        try:
            raise ConfigError("bad value")
        except ConfigError:
            record = loop.makeRecord(loop.name, logging.ERROR, "f", 1, "m", (), sys.exc_info())
        assert not loop.filter(record)
    finally:
        warnings.filters[:] = saved
        loop.filters.clear()


@pytest.mark.parametrize(
    "script",
    sorted(
        p.relative_to(REPO).as_posix()
        for d in ("tools", "datasets", "benchmarks")
        for p in (REPO / d).glob("*.py")
    ),
)
def test_every_tool_sets_its_policy_before_importing_detectron2(script):
    def is_call(node: ast.stmt) -> bool:
        return (
            isinstance(node, ast.Expr)
            and isinstance(node.value, ast.Call)
            and getattr(node.value.func, "id", "") == "set_tool_policy"
        )

    def is_light_import(node: ast.stmt) -> bool:
        # the standard library and our ground floor import nothing that warns
        names = (
            [node.module or ""]
            if isinstance(node, ast.ImportFrom)
            else [a.name for a in node.names]
        )
        return all(
            n.split(".")[0] in sys.stdlib_module_names or n.startswith("resnext_det.utils")
            for n in names
        )

    body = ast.parse((REPO / script).read_text()).body
    calls = [i for i, node in enumerate(body) if is_call(node)]
    assert calls, f"{script} never calls set_tool_policy()"
    heavy = [
        i
        for i, node in enumerate(body)
        if isinstance(node, (ast.Import, ast.ImportFrom)) and not is_light_import(node)
    ]
    assert calls[0] < min(heavy, default=len(body)), f"{script} imports before set_tool_policy()"
