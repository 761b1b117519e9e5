"""Build fluidrec's optional C kernels (everything else is in pyproject.toml).

- ``fluidrec.codes._rqkernel``: the RQ-KMeans encoder (``fluidrec.codes.rqkmeans.kernel_available()``);
- ``fluidrec.ranker._fusedkernel``: the ranker backbone in one call, for compiled inference
  (``fluidrec.ranker.fused.kernel_available()``).

``optional=True``: without a C compiler the install still succeeds and fluidrec uses its
torch paths (same results, slower).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "fluidrec.codes._rqkernel",
            sources=["src/fluidrec/codes/_rqkernel.c"],
            depends=["src/fluidrec/_gemm6x16.h"],
            extra_compile_args=["-O3"],
            optional=True,
        ),
        Extension(
            "fluidrec.ranker._fusedkernel",
            sources=["src/fluidrec/ranker/_fusedkernel.c"],
            depends=["src/fluidrec/_gemm6x16.h"],
            extra_compile_args=["-O3", "-pthread"],
            extra_link_args=["-pthread"],
            optional=True,
        ),
    ]
)
