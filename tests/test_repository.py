"""The repository's contracts: import floors, the README's commands, packaging."""
import ast
import os
import re
import subprocess
import sys
import tarfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _imports(folder):
    """(file, imported top-level module path) for every .py file under ROOT/folder."""
    for dirpath, _, files in os.walk(os.path.join(ROOT, folder)):
        for name in files:
            if not name.endswith(".py"):
                continue
            path = os.path.join(dirpath, name)
            for node in ast.walk(ast.parse(open(path, encoding="utf-8").read(), path)):
                if isinstance(node, ast.Import):
                    yield from ((path, alias.name) for alias in node.names)
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    yield path, node.module


@pytest.mark.parametrize("folder, forbidden", [
    ("magvit", ("apache_beam", "tfx", "pipelines", "components")),
    ("tfrecords_schemas", ("apache_beam", "tfx", "pipelines", "components", "magvit")),
    ("components", ("pipelines.run",)),
])
def test_import_floors(folder, forbidden):
    bad = [(os.path.relpath(p, ROOT), m) for p, m in _imports(folder)
           if any(m == f or m.startswith(f + ".") for f in forbidden)]
    assert not bad, f"{folder}/ imports from a floor above it: {bad}"


def test_beam_jobs_do_not_import_components():
    bad = [(os.path.relpath(p, ROOT), m) for p, m in _imports("pipelines")
           if m.startswith("components") and not p.endswith(os.path.join("pipelines", "run.py"))]
    assert not bad, bad


def _readme_commands():
    text = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    setup = text.split("## ", 2)[1]  # the first section: set-up
    return re.findall(r"^```(?:bash|sh)\n(.*?)\n```", setup, re.M | re.S)


def test_readme_has_exactly_two_setup_commands_and_ci_runs_the_test_one():
    commands = _readme_commands()
    assert len(commands) == 2, commands
    assert "pipelines.run" in commands[0] and "pytest" in commands[1]
    ci = open(os.path.join(ROOT, ".ci", "run"), encoding="utf-8").read()
    assert commands[1].strip() in ci.splitlines(), ".ci/run must run the README's test command"


def test_sdist_contains_the_code_workers_need(tmp_path):
    subprocess.run([sys.executable, "setup.py", "-q", "sdist", "--dist-dir", str(tmp_path)], cwd=ROOT,
                   check=True, capture_output=True)
    (archive,) = [p for p in os.listdir(tmp_path) if p.endswith(".tar.gz")]
    with tarfile.open(tmp_path / archive) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    for required in ("setup.py", "magvit/configs/settings.py", "magvit/video_io.py",
                     "pipelines/datasets/demo.py", "tfrecords_schemas/clip.py",
                     "tfrecords_schemas/clip.schema.pbtxt", "tfrecords_schemas/tokens.schema.pbtxt"):
        assert required in names, f"{required} missing from the sdist"


def test_no_product_module_is_over_400_lines():
    """Small modules: none of the product's (magvit, pipelines, components, tfrecords_schemas,
    bench) is over 400 lines."""
    long = []
    for folder in ("magvit", "pipelines", "components", "tfrecords_schemas", "bench"):
        for dirpath, _, files in os.walk(os.path.join(ROOT, folder)):
            for name in files:
                if name.endswith(".py"):
                    path = os.path.join(dirpath, name)
                    with open(path, encoding="utf-8") as f:
                        lines = sum(1 for _ in f)
                    if lines > 400:
                        long.append(f"{os.path.relpath(path, ROOT)}: {lines} lines")
    assert not long, long
