"""The paper's published figures (fluid.txt Tables 3-7), shown beside ours in the report.

Relative changes are computed the paper's way: (value / baseline - 1) * 100, in percent.
"""

from __future__ import annotations

BASELINE_AUC = 0.7784
BASELINE_LOGLOSS = 0.1264

# Table 3: CTR AUC and logloss.
TABLE3 = {
    "baseline": {"auc": 0.7784, "logloss": 0.1264},
    "slice": {"auc": 0.7801, "logloss": 0.1263},
    "no_id": {"auc": 0.7748, "logloss": 0.1273},
    "fluid": {"auc": 0.7802, "logloss": 0.1262},
}

# Table 4: online A/B relative changes in percent (None = "n.s.").
TABLE4 = {
    "quality_watch_duration": {"slice": 0.43, "no_id": -0.02, "fluid": 0.55},
    "quality_watch_sessions": {"slice": 0.39, "no_id": -0.10, "fluid": 0.51},
    "cold_start_room_views": {"slice": 1.15, "no_id": 1.58, "fluid": 2.05},
    "niche_room_views": {"slice": 0.69, "no_id": 2.23, "fluid": 2.87},
    "unique_watched_tags": {"slice": 0.55, "no_id": 0.20, "fluid": 1.63},
    "stay_duration": {"slice": None, "no_id": -0.05, "fluid": 0.07},
}

# Table 5: AUC of embedding-design variants (FLUID configuration).
TABLE5 = {
    "levelwise": 0.7793,
    "prefix_ngram": 0.7802,
    "shared_tables": 0.7798,
    "independent_tables": 0.7802,
}

# Table 6: encoder ablation, live and video keyphrase retrieval, Recall@10 / @50 in percent.
TABLE6 = {
    "baseline_backbone": {"live_q2i": (43.96, 59.95), "video_q2i": (73.40, 84.36)},
    "full": {"live_q2i": (47.44, 61.62), "video_q2i": (87.10, 93.35)},
    "dual_tower": {"live_q2i": (45.37, 59.90), "video_q2i": (83.68, 90.91)},
    "single_stage": {"live_q2i": (45.01, 59.83), "video_q2i": (84.13, 91.47)},
}

# Table 7: AUC of fusion variants and training recipes.
TABLE7 = {
    "early_replace": 0.7774,
    "early_concat": 0.7785,
    "gate_learned": 0.7783,
    "gate_feature": 0.7785,
    "late_em3": 0.7785,
    "late": 0.7801,
    "naive_joint": 0.7784,
    "stage1": 0.7801,
    "stage2": 0.7793,
    "stage3": 0.7802,
    "fluid_id_back": 0.7802,  # "no additional AUC gain" (text, no figure given)
}


def rel(value: float, base: float) -> float:
    """Relative change in percent, as the paper reports it."""
    return (value / base - 1.0) * 100.0
