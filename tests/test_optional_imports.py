"""The optional packages (matplotlib for ``plot``, onnx for ``export``) are imported only
by the commands that need them: ``import numbacnn`` and ``numbacnn shapes`` stay light."""

from __future__ import annotations

import subprocess
import sys


def test_import_and_shapes_load_no_matplotlib_or_onnx() -> None:
    code = ("import sys\n"
            "import numbacnn, numbacnn.tools.plots, numbacnn.io.onnx_export\n"
            "from click.testing import CliRunner\n"
            "from numbacnn_cli.main import cli\n"
            "result = CliRunner().invoke(cli, ['shapes', 'alexnet'])\n"
            "assert result.exit_code == 0, result.output\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & "
            "{'matplotlib', 'onnx', 'onnxruntime', 'numba'}))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "[]", result.stdout
