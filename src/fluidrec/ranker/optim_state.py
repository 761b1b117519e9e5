"""Optimizer state carried across warmup stages, keyed by parameter name.

Every stage builds a new model (tokens come and go), so its optimizers start empty unless
told otherwise. For a parameter that persists (same name, same shape: the user table, the
backbone, the slice code tables after stage 1, ...) a fresh Adam state restarts the
moment estimates and the bias correction at every hand-off, as if the weights had just
been initialised; carrying them is what one long training run would do. New parameters
(a token added by the stage, a copy such as room <- slice) start with no state.

Example:
    >>> saved = optimizer_state_by_name(model, opts)        # end of stage i
    >>> n = restore_optimizer_state(new_model, new_opts, saved)   # start of stage i + 1
"""

from __future__ import annotations

import torch
from torch import nn


def optimizer_state_by_name(model: nn.Module, opts: list[torch.optim.Optimizer]) -> dict[str, dict[str, object]]:
    """Each parameter's optimizer state (cloned tensors), keyed by the parameter's name in ``model``."""
    names = {id(p): n for n, p in model.named_parameters()}
    saved: dict[str, dict[str, object]] = {}
    for opt in opts:
        for p, state in opt.state.items():
            if id(p) in names and state:
                saved[names[id(p)]] = {k: v.detach().clone() if torch.is_tensor(v) else v for k, v in state.items()}
    return saved


def restore_optimizer_state(model: nn.Module, opts: list[torch.optim.Optimizer], saved: dict[str, dict[str, object]]) -> int:
    """Give every parameter of ``model`` found in ``saved`` with the same shape its state back; returns how many."""
    names = {id(p): n for n, p in model.named_parameters()}
    restored = 0
    for opt in opts:
        for group in opt.param_groups:
            for p in group["params"]:
                state = saved.get(names.get(id(p), ""))
                if state is None or not _same_shape(state, p):
                    continue
                opt.state[p] = {k: v.clone() if torch.is_tensor(v) else v for k, v in state.items()}
                restored += 1
    return restored


def _same_shape(state: dict[str, object], p: torch.Tensor) -> bool:
    moments = [v for k, v in state.items() if k != "step" and torch.is_tensor(v)]
    return bool(moments) and all(v.shape == p.shape for v in moments)
