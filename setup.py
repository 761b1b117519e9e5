"""Build the optional C kernel of the RQ-KMeans encoder (everything else is in pyproject.toml).

``optional=True``: without a C compiler the install still succeeds and fluidrec uses its
torch/NumPy encode path (``fluidrec.codes.rqkmeans.kernel_available()`` says which).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "fluidrec.codes._rqkernel",
            sources=["src/fluidrec/codes/_rqkernel.c"],
            extra_compile_args=["-O3"],
            optional=True,
        )
    ]
)
