"""Names of the ranker's candidate-side vocabulary, kept free of torch so the CLI and
the warmup plans can use them without importing the model."""

CANDIDATE_TOKENS = ("item_id", "slice", "room", "early")
FUSIONS = ("replace", "concat", "gate_learned", "gate_feature")
# Classical peer arms (fluidrec.ranker.peers): not token rankers, so not in arms.ARMS.
PEER_ARMS = ("lr", "gbdt")
