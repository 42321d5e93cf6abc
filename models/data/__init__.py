"""The shared data layer the network, training and evaluation all stand on: the event log, its
chronological split and time batches (`events`), the vectorised temporal neighbour finder
(`neighbors`), snapshot timing (`snapshots`: when a user gets a profile, which one applies at t)
and profile snapshots as tensors (`profile_index`).

May import: `models.vocabulary`, numpy, torch. Nothing else of `models`.
"""
