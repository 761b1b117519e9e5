"""Building the CLI must not import torch: every command (and --help) would pay ~2 s for it."""

import subprocess
import sys


def test_cli_parser_does_not_import_torch():
    code = "import sys, fluidrec.cli as c; c.build_parser(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False"


def test_lazy_package_exports_resolve():
    import fluidrec.codes as codes
    import fluidrec.encoder as encoder
    import fluidrec.ranker as ranker

    for pkg in (codes, encoder, ranker):
        assert set(pkg.__all__) <= set(pkg._EXPORTS), pkg.__name__
        for name in pkg.__all__:
            assert getattr(pkg, name) is not None
