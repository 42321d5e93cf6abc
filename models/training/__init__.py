"""Running DynLLM over the timeline: the batch stream shared by training, validation, testing
and replay (`stream`), the training loop with early stopping and checkpoints (`loop`), and the
replay that produces what the analyst browses (`replay`).

May import: `models.network`, `models.data`, `models.vocabulary` and, for ranking,
`models.evaluation.metrics` and `models.evaluation.protocols`. Never `profiles`.
"""
