"""No config, command line or environment variable can make `bilstm fit` import code outside the allowed packages.

A marker module on ``sys.path`` writes a file when it is imported (as ``import this`` prints the Zen of Python).
Every route by which jsonargparse could resolve a class path is tried in one process; each must be refused
with one clear line and exit status 2, and the marker must never have been imported.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.conftest import ROOT

ROUTES = r'''
import contextlib, io, json, os, sys
from pathlib import Path
from toolkit.cli import main

tmp = Path(sys.argv[1])
base = (Path("configs/textcat_sample.yaml")).read_text()
(tmp / "class_path.yaml").write_text(base.replace("class_path: toolkit.tasks.ClassifyModule",
                                                  "class_path: marker_evil.Cb"))
(tmp / "inline.yaml").write_text(base + "\n" + 'trainer: \'{"callbacks": [{"class_path": "marker_evil.Cb"}]}\'\n')
(tmp / "nested_model.yaml").write_text("class_path: marker_evil.Cb\n")
before_model, after_data = base.split("model:")[0], base.split("data:")[1]
(tmp / "nesting.yaml").write_text(before_model + "model: nested_model.yaml\ndata:" + after_data)
(tmp / "stdlib.yaml").write_text(base.replace("class_path: toolkit.tasks.ClassifyModule", "class_path: os.system"))
sample = ["--config", "configs/textcat_sample.yaml"]
routes = {
    "class_path in a config file": ["--config", str(tmp / "class_path.yaml")],
    "-c": ["-c", str(tmp / "class_path.yaml")],
    "--conf= (argparse abbreviation)": [f"--conf={tmp / 'class_path.yaml'}"],
    "inline JSON string in a YAML file": ["--config", str(tmp / "inline.yaml")],
    "nested config file, relative path": ["--config", str(tmp / "nesting.yaml")],
    "stdlib class in a config file": ["--config", str(tmp / "stdlib.yaml")],
    "inline JSON on the command line": [*sample, "--trainer", '{"callbacks": [{"class_path": "marker_evil.Cb"}]}'],
    "appended callback": [*sample, "--trainer.callbacks+=marker_evil.Cb"],
    "dotted class_path flag": [*sample, "--trainer.logger.class_path", "marker_evil.Cb"],
    "bare value for a class option": [*sample, "--trainer.logger", "marker_evil.Cb"],
    "--model=": [*sample, "--model=marker_evil.Cb"],
    "--data.class_path": [*sample, "--data.class_path", "marker_evil.Cb"],
    "environment variable": [*sample],
}
results = {}
for name, argv in routes.items():
    if name == "environment variable":
        os.environ["JSONARGPARSE_DEFAULT_ENV"] = "true"
        os.environ["PL_FIT__TRAINER__CALLBACKS"] = '[{"class_path": "marker_evil.Cb"}]'
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(["fit", *argv, "--print_config"])
        except SystemExit as exit_:
            code = exit_.code
    results[name] = {"code": code, "stderr": stderr.getvalue().strip().splitlines()[-1:]}
print(json.dumps(results))
'''


def test_no_route_imports_code_outside_the_allowed_packages(tmp_path):
    marker = tmp_path / "marker_was_imported"
    modules = tmp_path / "modules"
    modules.mkdir()
    (modules / "marker_evil.py").write_text(
        f"from pathlib import Path\nPath({str(marker)!r}).write_text('imported')\nclass Cb:\n    pass\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(modules), str(ROOT)])}
    result = subprocess.run([sys.executable, "-c", ROUTES, str(tmp_path)], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    routes = json.loads(result.stdout.strip().splitlines()[-1])
    assert len(routes) == 13
    for name, outcome in routes.items():
        assert outcome["code"] == 2, (name, outcome)
        assert "names code outside the allowed packages" in outcome["stderr"][0], (name, outcome)
    assert "'os.system' names code" in routes["stdlib class in a config file"]["stderr"][0]
    assert not marker.exists(), "the marker module was imported"


def test_the_marker_is_imported_when_allowed_so_the_test_can_fail(tmp_path):
    """The same marker does write its file when Python imports it: the test above would see a leak."""
    marker = tmp_path / "marker_was_imported"
    (tmp_path / "marker_evil.py").write_text(f"from pathlib import Path\nPath({str(marker)!r}).write_text('x')\n")
    subprocess.run([sys.executable, "-c", "import marker_evil"], cwd=tmp_path, check=True, timeout=60)
    assert marker.exists()
