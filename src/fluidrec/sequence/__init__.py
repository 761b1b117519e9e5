"""Semantic-native long user histories (issue 17): the event log, history batches, and the models over them.

Data (``events``, ``data``): the video feed as an :class:`EventLog` and causal, right-aligned
history batches. Models (``embed``, ``compress``, ``baselines``, ``models``): ID or semantic
prefix histories, the Global-Aware Compression Transformer and its baselines. Runs
(``train``, ``cost``, ``run``, ``report``): the training loop, measured cost vs S, and
``fluidrec reproduce --paper long-sequence``. See docs/sequence.md.

Example:
    >>> from fluidrec.sequence import load_event_log, history_batch, split_indices
    >>> log = load_event_log(Path("data/world"), None, true_codes=True)
    >>> batch = history_batch(log, split_indices(log, "train")[:64], seq_len=256)
    >>> model = build_model(SequenceModelConfig(arm="compress"), n_items=log.n_items, codebook_size=log.codebook_size)
"""

from fluidrec.utils.lazy import lazy_exports

# Imported on first use: `fluidrec --help` (which imports fluidrec.sequence.cli) must not pay for torch.
_EXPORTS = {
    # data helper's exports
    "build_event_log": "data",
    "event_log_summary": "data",
    "read_feed_truth": "data",
    "summary_line": "data",
    "truth_yardsticks": "data",
    "EventLog": "events",
    "HistoryBatch": "events",
    "history_batch": "events",
    "history_batch_reference": "events",
    "load_event_log": "data",
    "split_indices": "events",
    # models helper's exports
    "SequenceModelConfig": "config",
    "SequenceTrainConfig": "config",
    "SequenceRunConfig": "config",
    "sequence_config": "config",
    "HistoryEmbedding": "embed",
    "CompressionEncoder": "compress",
    "fold_windows": "compress",
    "fold_time_spans": "compress",
    "SequenceRanker": "models",
    "build_model": "models",
    "train_model": "train",
    "evaluate": "train",
    "reproduce_long_sequence": "run",
}
__all__ = list(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS, globals())
