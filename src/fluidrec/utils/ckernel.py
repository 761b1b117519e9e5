"""Load fluidrec's optional C kernels (plain C functions in small extension modules).

The kernels are built by ``setup.py`` as optional extensions; each module is an empty
Python module whose shared object also exports plain C functions, called through ctypes
(which releases the GIL for the call). Where a kernel was not built (no C compiler at
install time) ``load_kernel`` returns None and callers take their torch path. Setting
``FLUIDREC_NO_KERNELS=1`` makes every kernel count as not built, so a machine with a
compiler can check the fallback the way a machine without one runs (tests included).

Example:
    >>> fns = load_kernel("fluidrec.ranker._fusedkernel", {"fluidrec_token_attention": (["p", "i", "i", "i", "i", "p", "i"], "i")})
"""

from __future__ import annotations

import ctypes
import importlib
import os
from typing import Any

_TYPES = {"p": ctypes.c_void_p, "i": ctypes.c_int64, "d": ctypes.c_double, None: None}

NO_KERNELS_ENV = "FLUIDREC_NO_KERNELS"  # set: behave as if no kernel was built
PANEL = 16  # column panel width of the kernels' GEMM (GC in src/fluidrec/_gemm6x16.h)


def load_kernel(module: str, signatures: dict[str, tuple[list[str], str | None]]) -> dict[str, Any] | None:
    """name -> ctypes function for each C function of ``module``, or None if it is not built.

    Args:
        module: dotted name of the extension module.
        signatures: C function name -> (argument types, return type); types are "p" (pointer),
            "i" (int64), "d" (double) or None (void return).
    """
    if os.environ.get(NO_KERNELS_ENV):
        return None
    try:
        lib = ctypes.CDLL(importlib.import_module(module).__file__)
        fns = {}
        for name, (args, res) in signatures.items():
            fn = getattr(lib, name)
            fn.argtypes = [_TYPES[a] for a in args]
            fn.restype = _TYPES[res]
            fns[name] = fn
        return fns
    except (ImportError, OSError, AttributeError, TypeError):
        return None


def pack_panels(w_kn: Any) -> Any:
    """A (K, N) float32 weight in the GEMM's packed order: (ceil(N / PANEL), K, PANEL), flat.

    Columns past N are zero, so the kernels can always work on whole panels.
    """
    import torch

    k, n = w_kn.shape
    padded = torch.zeros(k, -(-n // PANEL) * PANEL, dtype=torch.float32)
    padded[:, :n] = w_kn
    return padded.reshape(k, -1, PANEL).permute(1, 0, 2).contiguous().reshape(-1)  # (K, P, PANEL) -> (P, K, PANEL), flat
