"""Running a tool as the user does, and what its user error must look like.

``run_cli`` runs ``python <tool> <args>`` in this test process (``runpy``, ``__main__``,
with ``sys.argv``, the environment and the working folder as a subprocess would have them),
so that a check of a tool's one-line error does not pay for a new interpreter importing
torch and Detectron2 (3-5 s each, a third of the suite once). It is for runs that end
before any training: what outlives the run in this process (Detectron2's dataset
registry, the environment, the folder) is put back afterwards. Tests of processes
themselves (kill -9, SIGTERM, several workers, imports) use ``run_cli_in_subprocess``.
"""

import contextlib
import io
import os
import re
import runpy
import subprocess
import sys
import traceback

from detectron2.data import DatasetCatalog, MetadataCatalog

from ._paths import REPO

__all__ = ["assert_one_line_error", "run_cli", "run_cli_in_subprocess"]


@contextlib.contextmanager
def _as_a_new_process(argv: list[str], env: dict, cwd):
    saved_env, saved_cwd, saved_argv = dict(os.environ), os.getcwd(), sys.argv
    datasets, metadata = dict(DatasetCatalog), dict(MetadataCatalog)
    os.environ.update(env)
    os.chdir(cwd)
    sys.argv = argv
    try:
        yield
    finally:
        sys.argv = saved_argv
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
        DatasetCatalog.clear()
        DatasetCatalog.update(datasets)
        MetadataCatalog.clear()
        MetadataCatalog.update(metadata)


def run_cli(tool, *args, env=None, cwd=REPO) -> subprocess.CompletedProcess:
    """``python <tool> <args>``, in this process; returns what a subprocess run would."""
    path = str(REPO / tool)
    argv = [path, *map(str, args)]
    stdout, stderr = io.StringIO(), io.StringIO()
    code = 0
    with _as_a_new_process(argv, {k: str(v) for k, v in (env or {}).items()}, cwd):
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            try:
                runpy.run_path(path, run_name="__main__")
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
            except BaseException:  # what the interpreter would print before exiting with 1
                traceback.print_exc()
                code = 1
    return subprocess.CompletedProcess(argv, code, stdout.getvalue(), stderr.getvalue())


def run_cli_in_subprocess(tool, *args, env=None, cwd=REPO) -> subprocess.CompletedProcess:
    """``python <tool> <args>`` in a new process."""
    return subprocess.run(
        [sys.executable, str(REPO / tool), *map(str, args)],
        cwd=cwd,
        env={**os.environ, **{k: str(v) for k, v in (env or {}).items()}},
        capture_output=True,
        text=True,
    )


def assert_one_line_error(run: subprocess.CompletedProcess, pattern: str) -> None:
    """Exit code 2, no traceback, and a last line ``error: ...`` matching ``pattern``."""
    output = run.stdout + run.stderr
    assert run.returncode == 2, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and re.search(pattern, last), last
