"""The optional C kernels must actually build where a C compiler exists.

``setup.py`` marks them optional so an install without a compiler still works, but that
also hides a kernel that stopped compiling: its tests would skip and CI would stay green.
Set FLUIDREC_EXPECT_NO_KERNELS=1 when checking the fallback on purpose (e.g. CC=/bin/false).
"""

import os
import shutil
import sysconfig

import pytest

from fluidrec.codes.rqkmeans import kernel_available as rq_kernel_available
from fluidrec.ranker.fused import kernel_available as fused_kernel_available


def test_c_kernels_are_built_where_a_compiler_exists():
    if os.environ.get("FLUIDREC_EXPECT_NO_KERNELS"):
        pytest.skip("FLUIDREC_EXPECT_NO_KERNELS is set")
    cc = (os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(cc) is None:
        pytest.skip(f"no C compiler ({cc}) on this machine")
    hint = "a C compiler is present but a kernel did not build; `python setup.py build_ext --inplace` shows why"
    assert rq_kernel_available(), f"fluidrec.codes._rqkernel: {hint}"
    assert fused_kernel_available(), f"fluidrec.ranker._fusedkernel: {hint}"
