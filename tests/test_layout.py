"""The package's shape: the plugin apart from the reproduction, rooms on floors, imports
only downward, thin tools, no import-time policy.

The floors are written once, in docs/design/layout.md; this test reads them from there.
"""

import ast
import logging
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from ._paths import REPO

PACKAGE = REPO / "resnext_det"
LAYOUT = REPO / "docs" / "design" / "layout.md"
REPRODUCTION = "reproduction"


def _floors() -> dict[str, int]:
    """Room -> floor, from the table of docs/design/layout.md (``reproduction/engine/`` is
    the room ``reproduction.engine``)."""
    floors = {}
    for floor, rooms in re.findall(r"^\| (\d+) \| (.+?) \| .* \|$", LAYOUT.read_text(), re.M):
        for room in re.findall(r"`([\w/.]+)`", rooms):
            name = room.rstrip("/").removesuffix(".py").replace("/", ".")
            floors[name] = int(floor)
    return floors


FLOORS = _floors()


def _room(module: str) -> str:
    """``resnext_det.reproduction.engine.trainer`` -> ``reproduction.engine``;
    ``resnext_det.modeling.blocks`` -> ``modeling``."""
    parts = module.split(".")
    if len(parts) > 2 and parts[1] == REPRODUCTION:
        return ".".join(parts[1:3])
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
    assert len(FLOORS) >= 13 and FLOORS["utils"] == 0  # the table was read
    rooms = {_room(_module_name(p)) for p in _package_modules()} - {"", REPRODUCTION}
    assert rooms <= set(FLOORS), f"rooms without a floor: {sorted(rooms - set(FLOORS))}"


def test_the_plugin_sits_below_the_reproduction():
    plugin = [r for r in FLOORS if not r.startswith(REPRODUCTION)]
    reproduction = [r for r in FLOORS if r.startswith(REPRODUCTION)]
    assert max(FLOORS[r] for r in plugin) < min(FLOORS[r] for r in reproduction)


def test_imports_only_go_downward():
    upward = []
    for path in _package_modules():
        source = _room(_module_name(path))
        if source in ("", REPRODUCTION):  # the packages' own __init__: their public names
            continue
        for target in _imports(path):
            room = _room(target)
            if room and room != source and FLOORS[room] >= FLOORS[source]:
                upward.append(f"{path.relative_to(REPO)} imports {target}")
    assert not upward, "imports sideways or upward:\n" + "\n".join(upward)


def test_the_layering_check_sees_an_upward_import(tmp_path):
    # The check above must be able to fail: an analysis module importing the engine, and a
    # plugin module importing the reproduction.
    bad = tmp_path / "resnext_det" / "reproduction" / "analysis" / "bad.py"
    bad.parent.mkdir(parents=True)
    bad.write_text("from ..engine.trainer import Trainer\nfrom .paper import TABLES\n")
    names = _imports(bad, root=tmp_path)
    assert names == [
        "resnext_det.reproduction.engine.trainer",
        "resnext_det.reproduction.analysis.paper",
    ]
    assert FLOORS[_room(names[0])] > FLOORS["reproduction.analysis"]
    plugin = tmp_path / "resnext_det" / "checkpoint" / "bad.py"
    plugin.parent.mkdir(parents=True)
    plugin.write_text("from ..reproduction.data import register_demo_datasets\n")
    (target,) = _imports(plugin, root=tmp_path)
    assert FLOORS[_room(target)] > FLOORS["checkpoint"]


def _fresh_python_prints(code: str) -> list[str]:
    """What ``code`` prints in a new interpreter (nothing imported yet), as words."""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    )
    return out.stdout.split()


@pytest.mark.parametrize(
    "module",
    [
        "resnext_det",
        "resnext_det.reproduction.engine",
        "resnext_det.checkpoint",
        "resnext_det.reproduction.data",
    ],
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


COMMANDS = PACKAGE / REPRODUCTION / "commands"
# Scripts that need the checkout itself (its tests, its docs) and stay whole.
CHECKOUT_SCRIPTS = {"tools/gpu_check.py", "benchmarks/speed.py"}


@pytest.mark.parametrize(
    "script",
    sorted(
        p.relative_to(REPO).as_posix()
        for d in ("tools", "datasets")
        for p in (REPO / d).glob("*.py")
        if p.relative_to(REPO).as_posix() not in CHECKOUT_SCRIPTS
    ),
)
def test_every_tool_is_a_thin_script_over_its_command(script):
    """The code lives in the package (a console script when installed); the script only
    calls it."""
    name = Path(script).stem
    body = [n for n in ast.parse((REPO / script).read_text()).body if not isinstance(n, ast.Expr)]
    imports = [n for n in body if isinstance(n, (ast.Import, ast.ImportFrom))]
    assert [(n.module, [a.name for a in n.names]) for n in imports] == [
        (f"resnext_det.reproduction.commands.{name}", ["cli"])
    ]
    assert len(body) == 2 and isinstance(body[1], ast.If)  # if __name__ == "__main__": cli()
    command = (COMMANDS / f"{name}.py").read_text()
    assert re.search(r"^def cli\(\) -> None:\n(?:.*\n)*?    run_tool\(", command, re.M), name


def test_every_command_is_a_console_script():
    scripts = re.findall(
        r"resnext-([\w-]+)=resnext_det\.reproduction\.commands\.(\w+):cli", _console_scripts()
    )
    commands = sorted(p.stem for p in COMMANDS.glob("*.py") if p.stem != "__init__")
    assert len(commands) >= 14 and sorted(module for _, module in scripts) == commands
    assert all(script == module.replace("_", "-") for script, module in scripts)


def _console_scripts() -> str:
    """The console scripts setup.py declares (its setup() call captured, not run)."""
    code = (
        "import sys, setuptools\n"
        "setuptools.setup = lambda **kw: print(*kw['entry_points']['console_scripts'])\n"
        "sys.argv = ['setup.py']\n"
        "exec(compile(open('setup.py').read(), 'setup.py', 'exec'), {'__file__': 'setup.py'})\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert run.returncode == 0, run.stderr[-2000:]
    return run.stdout.replace(" ", "\n")


def test_the_plugin_needs_nothing_beyond_its_libraries():
    """Importing the plugin (registration included) loads no module of the reproduction and
    no library that Detectron2, torchvision and fvcore do not load themselves."""
    code = (
        "import sys\n"
        "import detectron2.checkpoint, detectron2.config, detectron2.modeling, "
        "detectron2.model_zoo, torchvision, fvcore.nn, iopath\n"
        "before = {m.split('.')[0] for m in sys.modules}\n"
        "import resnext_det, resnext_det.modeling, resnext_det.checkpoint, "
        "resnext_det.model_zoo, resnext_det.config, resnext_det.registration, "
        "resnext_det.checkpoint.download, resnext_det.checkpoint.resolve\n"
        "ours = sorted(m for m in sys.modules if m.startswith('resnext_det.reproduction'))\n"
        "new = sorted({m.split('.')[0] for m in sys.modules} - before - {'resnext_det'})\n"
        "print(ours, new)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    )
    stdlib = set(sys.stdlib_module_names)
    reproduction, new = out.stdout.split("] [")
    assert reproduction.strip("[ ") == ""
    third_party = [m.strip(" '[]\n") for m in new.split(",")]
    assert [m for m in third_party if m and m not in stdlib and not m.startswith("_")] == []


def _private_names() -> list[str]:
    table = (REPO / "docs" / "design" / "detectron2_private_names.md").read_text()
    return re.findall(r"^\| `([\w.]+)` \|", table, re.M)


@pytest.mark.parametrize("name", _private_names())
def test_the_private_names_we_use_are_still_there(name):
    """docs/design/detectron2_private_names.md lists them; an upgrade that drops one fails
    here, not in a user's run."""
    import importlib
    import inspect

    parts = name.split(".")
    for split in range(len(parts) - 1, 0, -1):
        try:
            target = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        *path, attribute = parts[split:]
        for part in path:
            target = getattr(target, part)
        if not hasattr(target, attribute):  # an instance attribute: set in the class's code
            sources = [inspect.getsource(c) for c in target.__mro__ if c is not object]
            assert any(f"self.{attribute} =" in source for source in sources), name
        return
    raise AssertionError(f"no module of {name} imports")


def test_the_private_names_are_listed():
    assert len(_private_names()) >= 10
