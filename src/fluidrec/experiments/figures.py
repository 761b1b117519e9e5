"""Report figures that belong to the main job: code utilisation per level and the
cross-domain case review (live slices and short videos sharing one code prefix,
the paper's Figure 4). Ranker diagnostics (Figures 1 and 5) live in
``fluidrec.ranker.diagnostics``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fluidrec.utils.figures import pyplot, save_figure


def utilisation_figure(utilisation: list[float], perplexity: list[float] | None, codebook_size: int, path: Path) -> Path:
    """Bar chart of codebook utilisation (used / N) per level, perplexity annotated."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 3))
    levels = np.arange(1, len(utilisation) + 1)
    ax.bar(levels, utilisation, color="#4C72B0")
    for i, u in enumerate(utilisation):
        label = f"{u:.2f}" + (f"\nppl {perplexity[i]:.0f}" if perplexity else "")
        ax.text(levels[i], u + 0.02, label, ha="center", va="bottom", fontsize=8)
    ax.set_ylim(0, 1.25)
    ax.set_xticks(levels)
    ax.set_xlabel("code level")
    ax.set_ylabel(f"utilisation (used / {codebook_size})")
    ax.set_title("LUCID codebook utilisation")
    fig.tight_layout()
    return save_figure(fig, path)


def pick_shared_prefixes(codes: np.ndarray, domain: np.ndarray, depth: int = 2, n: int = 2, min_each: int = 3) -> list[tuple[int, ...]]:
    """The ``n`` code prefixes of length ``depth`` with the most members in both domains (at least ``min_each`` each)."""
    keys = [tuple(row) for row in codes[:, :depth].tolist()]
    live_counts: dict[tuple, int] = {}
    video_counts: dict[tuple, int] = {}
    for k, d in zip(keys, domain):
        target = live_counts if d == "live" else video_counts
        target[k] = target.get(k, 0) + 1
    both = [(min(live_counts[k], video_counts[k]), k) for k in live_counts if k in video_counts]
    both = [b for b in both if b[0] >= min_each]
    both.sort(key=lambda b: (-b[0], b[1]))
    return [k for _, k in both[:n]]


def case_review_figure(
    codes: np.ndarray,
    domain: np.ndarray,
    titles: list[str],
    frames: list[bytes | None],
    frame_size: int | None,
    path: Path,
    depth: int = 2,
    per_domain: int = 3,
) -> tuple[Path, list[tuple[int, ...]]]:
    """Frames and titles of live slices and short videos sharing a code prefix, one row per prefix.

    Args:
        codes: (n, L) slice codes aligned with ``domain``, ``titles`` and ``frames``.
    """
    plt = pyplot()
    prefixes = pick_shared_prefixes(codes, domain, depth=depth)
    rows = max(len(prefixes), 1)
    cols = 2 * per_domain
    fig, axes = plt.subplots(rows, cols, figsize=(2.2 * cols, 2.6 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    prefix_match = codes[:, :depth]
    for r, prefix in enumerate(prefixes):
        member = np.all(prefix_match == np.array(prefix), axis=1)
        picks = [i for d in ("live", "video") for i in np.flatnonzero(member & (domain == d))[:per_domain]]
        for c, i in enumerate(picks):
            ax = axes[r, c]
            if frames[i] is not None and frame_size:
                ax.imshow(np.frombuffer(frames[i], np.uint8).reshape(frame_size, frame_size, 3))  # (S, S, 3)
            title = titles[i] if len(titles[i]) <= 28 else titles[i][:26] + "…"
            ax.set_title(f"{domain[i]}: {title}", fontsize=7)
        axes[r, 0].text(-0.1, 0.5, f"code {prefix}", transform=axes[r, 0].transAxes, rotation=90, va="center", ha="right", fontsize=9)
    if not prefixes:
        axes[0, 0].text(0, 0.5, "no code prefix is shared by enough live slices and videos", fontsize=9)
    fig.suptitle("Live slices (left) and short videos (right) sharing a LUCID prefix")
    fig.tight_layout()
    return save_figure(fig, path), prefixes


AGE_KEYS = (("auc_age_lt10", "< 10 min"), ("auc_age_10_30", "10–30 min"), ("auc_age_ge30", "≥ 30 min"))


def auc_by_age_figure(frozen: dict, streaming: dict, rows: list[str], names: dict[str, str], path: Path) -> Path:
    """CTR AUC by room age per arm, frozen protocol (left) and streaming test-then-train (right)."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6), sharey=True)
    x = np.arange(len(AGE_KEYS))
    width = 0.8 / max(len(rows), 1)
    for ax, table, title in ((axes[0], frozen, "frozen after training"), (axes[1], streaming, "streaming (test-then-train)")):
        for k, row in enumerate(rows):
            if row in table:
                ax.bar(x + (k - (len(rows) - 1) / 2) * width, [table[row][key] for key, _ in AGE_KEYS], width, label=names.get(row, row))
        ax.set_xticks(x, [label for _, label in AGE_KEYS])
        ax.set_xlabel("room age at the impression")
        ax.set_title(title)
    values = [table[row][key] for table in (frozen, streaming) for row in rows if row in table for key, _ in AGE_KEYS]
    values = [v for v in values if v == v]
    if values:
        axes[0].set_ylim(min(values) - 0.02, max(values) + 0.02)
    axes[0].set_ylabel("CTR AUC (test day)")
    axes[1].legend(fontsize=6, loc="lower right")
    fig.tight_layout()
    return save_figure(fig, path)


def closed_loop_figure(timeline: dict, names: dict[str, str], path: Path) -> Path:
    """Cumulative quality watch seconds per user over the test day, per closed-loop arm (oracle and random: bounds)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.8))
    hours = (np.asarray(timeline["window_end_ts"]) - timeline["window_end_ts"][0]) / 3_600_000
    curves = timeline["qwd_per_user"]
    for arm in [a for a in names if a in curves] + sorted(a for a in curves if a not in names):  # a fixed order, so colours match across figures
        curve = curves[arm]
        style = {"oracle": ("k", "--"), "random": ("grey", ":")}.get(arm, (None, "-"))
        ax.plot(hours, np.asarray(curve) / 60.0, color=style[0], ls=style[1], label=names.get(arm, arm))
    ax.set_xlabel("hours into the test day")
    ax.set_ylabel("quality watch minutes per user (cumulative)")
    ax.set_title("Closed-loop A/B: each arm learns from what it served")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, path)
