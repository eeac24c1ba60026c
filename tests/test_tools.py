"""The tools answer --help with exit status 0 and without the libraries' deprecation warnings (issue 28): each
imports ``eccentric_det.cli`` (or the recipe's command line) before Detectron2, which quiets them."""
import glob
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOLS = sorted(glob.glob(os.path.join(ROOT, "tools", "*.py")))


def test_every_tool_imports_the_cli_package_before_detectron2():
    for path in TOOLS:
        with open(path) as f:
            imports = [m.group(1) for m in re.finditer(r"^(?:from|import) ([\w.]+)", f.read(), re.M)]
        heavy = [i for i, name in enumerate(imports) if name.split(".")[0] in ("detectron2", "torch", "fvcore", "timm")]
        quiet = [i for i, name in enumerate(imports) if name.startswith(("eccentric_det.cli", "eccentric_det.recipe"))]
        assert quiet, f"{path} does not import eccentric_det.cli"
        assert not heavy or quiet[0] < heavy[0], f"{path} imports {imports[heavy[0]]} before eccentric_det.cli"


@pytest.mark.parametrize("tool", ["demo.py", "cloud_server.py", "train_net.py"])
def test_tool_help_is_clean(tool):
    out = subprocess.run([sys.executable, os.path.join("tools", tool), "--help"], cwd=ROOT, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "usage:" in out.stdout
    assert "Warning" not in out.stderr, out.stderr[-2000:]


def test_setup_logging_again_after_stdout_was_replaced_and_closed(monkeypatch, capsys):
    import io
    import logging

    from eccentric_det.cli.logs import setup_logging

    first = io.StringIO()
    monkeypatch.setattr(sys, "stdout", first)
    setup_logging(names=("eccentric_det.test_logs",))
    logging.getLogger("eccentric_det.test_logs").info("first run")
    assert "first run" in first.getvalue()
    first.close()  # a test's captured stdout, gone; Detectron2's cached setup_logger keeps its handler
    second = io.StringIO()
    monkeypatch.setattr(sys, "stdout", second)
    setup_logging(names=("eccentric_det.test_logs",))
    logging.getLogger("eccentric_det.test_logs").info("second run")
    assert "second run" in second.getvalue() and "Logging error" not in capsys.readouterr().err
