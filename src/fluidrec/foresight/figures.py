"""Figure 3 and Figure 4 analogs of the foresight report.

- Figure 3: one room's Sid timeline (segments coloured by their moment kind) and, for the
  room's most frequent Sids, the like / follow / gift rate per click of every impression
  shown while that Sid was on air; ``moment_rates`` gives the same rates by moment kind
  for the whole test log (the numeric check of "gifts in performances, follows in
  interactions").
- Figure 4: author-to-author retrieval. Each author is embedded by the mean pooled
  encoder output I of their training-day states (the Sid-sequence embedding) or by the
  base ranker's author-ID embedding (the collaborative two-tower stand-in; see
  docs/foresight.md); precision@10 = share of an author's 10 nearest authors (cosine)
  with the same true home topic.

Example:
    >>> rates = moment_rates(imp, seg_on_air, seg)
    >>> p10 = precision_at_k(emb, home_topic, k=10)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fluidrec.utils.figures import pyplot, save_figure

MOMENT_NAMES = ("ordinary", "performance", "interaction")
_COLORS = ("#999999", "#d62728", "#1f77b4")


def moment_rates(labels: dict[str, np.ndarray], moment_on_air: np.ndarray) -> dict[str, dict[str, float]]:
    """Like / follow / gift per click for impressions whose on-air segment has each moment kind."""
    out = {}
    for k, name in enumerate(MOMENT_NAMES):
        rows = moment_on_air == k
        clicks = float(labels["click"][rows].sum())
        out[name] = {"impressions": int(rows.sum()), "clicks": clicks,
                     **{t: float(labels[t][rows].sum()) / max(clicks, 1.0) for t in ("like", "follow", "gift")}}
    return out


def precision_at_k(emb: np.ndarray, topic: np.ndarray, k: int = 10) -> float:
    """Mean share of each row's k nearest rows (cosine, itself excluded) with the same topic."""
    x = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    sim = x @ x.T  # (A, A)
    np.fill_diagonal(sim, -np.inf)
    k = min(k, len(x) - 1)
    nn_idx = np.argpartition(-sim, k - 1, axis=1)[:, :k]  # (A, k)
    return float((topic[nn_idx] == topic[:, None]).mean())


def figure3(path: Path, room_sids: np.ndarray, room_moment: np.ndarray | None, sid_rates: dict[int, dict[str, float]],
            room_id: int) -> Path:
    """``room_moment`` None (imported data: no moment truth) plots every segment in one colour."""
    plt = pyplot()
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(8, 6))
    t = np.arange(len(room_sids)) * 0.5  # minutes
    if room_moment is None:
        ax1.scatter(t, room_sids, s=12, c=_COLORS[0], label="segment")
    for k, name in enumerate(MOMENT_NAMES if room_moment is not None else ()):
        m = room_moment == k
        ax1.scatter(t[m], room_sids[m], s=12, c=_COLORS[k], label=name)
    ax1.set_xlabel("minutes since the room started")
    ax1.set_ylabel("Sid")
    ax1.set_title(f"(a) Sid timeline of room {room_id}")
    ax1.legend(fontsize=8)
    sids = list(sid_rates)
    x = np.arange(len(sids))
    for j, task in enumerate(("like", "follow", "gift")):
        ax2.bar(x + (j - 1) * 0.27, [sid_rates[s][task] for s in sids], width=0.27, label=task)
    ticks = [f"{s}\n{MOMENT_NAMES[int(sid_rates[s]['moment'])][:5]}" if "moment" in sid_rates[s] else str(s) for s in sids]
    ax2.set_xticks(x, ticks, fontsize=7)
    ax2.set_ylabel("events per click (whole log)")
    ax2.set_title("(b) interactions while each of the room's Sids is on air")
    ax2.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)


def figure4(path: Path, p10: dict[str, float]) -> Path:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 3))
    names = list(p10)
    ax.bar(names, [p10[n] for n in names], color=["#1f77b4", "#ff7f0e", "#999999"][: len(names)])
    ax.set_ylabel("precision@10 (same home topic)")
    ax.set_title("Author-to-author retrieval")
    for i, n in enumerate(names):
        ax.text(i, p10[n], f"{p10[n]:.3f}", ha="center", va="bottom", fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)
