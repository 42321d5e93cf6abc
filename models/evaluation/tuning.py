"""The baselines with their settings chosen on validation, then scored once on test.

Validation: each setting learns from the training part only and is scored on the validation part
(same batches, the default protocol, `selection.SELECT_METRIC`). Test: the chosen setting learns
from training + validation and is scored on the test part under every protocol. Seeds change
only what is random (BPR-MF's initialisation, negatives and batch order); the choice is made once
with the first seed, and the split never moves. The deterministic baselines are scored once.
"""

from __future__ import annotations

from collections.abc import Callable

from models.data.events import EventLog, Split
from models.evaluation.baselines import (
    BPRMF,
    GPTopFreqScorer,
    ItemKNNScorer,
    PopularityScorer,
    RepeatScorer,
    TIFUKNNScorer,
    item_similarity,
)
from models.evaluation.metrics import DEFAULT_KS
from models.evaluation.protocols import (
    default_protocol,
    evaluate_scorer,
    evaluate_scorers,
    standard_protocols,
)
from models.evaluation.seeds import aggregate_results, seed_list
from models.evaluation.selection import Choice, check_validation_size, choose_on_validation

# BPR-MF: dimension x regularisation, each scored after 10 and 20 epochs (one training).
BPR_GRID = [{"dim": d, "reg": r} for d in (32, 64) for r in (1e-5, 1e-4)]
BPR_EPOCHS = (10, 20)
# TIFU-KNN: the paper's published settings for its datasets as the starting grid (group size,
# within-basket decay r_b, group decay r_g, neighbours k), each with both mixing weights.
TIFU_GRID = [{**base, "alpha": a}
             for base in ({"group_size": 3, "r_b": 0.9, "r_g": 0.7, "neighbours": 900},
                          {"group_size": 7, "r_b": 1.0, "r_g": 0.6, "neighbours": 300})
             for a in (0.7, 0.9)]
ITEM_KNN_GRID = [{"neighbours": k} for k in (50, 200)]


def _label(option: dict) -> str:
    return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                     for k, v in option.items())


def tuned_baseline_results(
    log: EventLog,
    split: Split,
    *,
    batch_size: int = 2048,
    ks: tuple[int, ...] = DEFAULT_KS,
    seed: int = 0,
    n_seeds: int = 1,
    progress: Callable[[str], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> dict[str, dict]:
    """{method: {protocol: metrics (mean ± sd over seeds), "choice": record}} for popularity,
    repeat history, GP-TopFreq, BPR-MF, TIFU-KNN and item-kNN."""
    seeds = seed_list(seed, n_seeds)
    check_validation_size(len(split.val))
    protocol, _ = default_protocol(log, split)
    val_protocols = {protocol: standard_protocols(log, split)[protocol]}
    train_only, known = range(0, split.val.start), range(0, split.test.start)

    def say(text: str) -> None:
        if progress is not None:
            progress(text)

    def on_val(scorer) -> dict:
        return evaluate_scorer(scorer, log, split, batch_size=batch_size, ks=ks,
                               part=split.val, protocols=val_protocols,
                               should_stop=should_stop)[protocol]

    def on_test(scorer) -> dict:
        return evaluate_scorer(scorer, log, split, batch_size=batch_size, ks=ks,
                               should_stop=should_stop)

    results: dict[str, dict] = {}
    for scorer in (PopularityScorer(log), RepeatScorer(log), GPTopFreqScorer(log)):
        say(scorer.name)
        results[scorer.name] = aggregate_results([on_test(scorer)])

    say("BPR-MF: choosing dim, reg, epochs on validation")
    checkpoints: dict[tuple, dict] = {}
    for option in BPR_GRID:
        def score_epoch(epoch: int, model: BPRMF, option: dict = option) -> None:
            if epoch in BPR_EPOCHS:
                checkpoints[(option["dim"], option["reg"], epoch)] = on_val(model)
        BPRMF.fit(log, train_only, epochs=max(BPR_EPOCHS), seed=seeds[0], on_epoch=score_epoch,
                  **option)
    choice = choose_on_validation(
        [{"dim": d, "reg": r, "epochs": e} for d, r, e in checkpoints],
        lambda o: checkpoints[(o["dim"], o["reg"], o["epochs"])])
    per_seed = [on_test(BPRMF.fit(log, known, seed=s, **choice.option)) for s in seeds]
    results["BPR-MF"] = _with_choice(aggregate_results(per_seed), choice, protocol)

    say("TIFU-KNN: choosing m, r_b, r_g, k, alpha on validation")
    # The alphas of one setting share its user vectors and neighbours: scored in one pass.
    tifu_val: dict[str, dict] = {}
    for base in dict.fromkeys(_label({k: v for k, v in o.items() if k != "alpha"})
                              for o in TIFU_GRID):
        options = [o for o in TIFU_GRID
                   if _label({k: v for k, v in o.items() if k != "alpha"}) == base]
        first = TIFUKNNScorer(log, **options[0])
        scorers = [first] + [first.with_alpha(o["alpha"]) for o in options[1:]]
        figures = evaluate_scorers(scorers, log, split, batch_size=batch_size, ks=ks,
                                   part=split.val, protocols=val_protocols,
                                   should_stop=should_stop)
        for option, by_protocol in zip(options, figures, strict=True):
            tifu_val[_label(option)] = by_protocol[protocol]
    choice = choose_on_validation(TIFU_GRID, lambda o: tifu_val[_label(o)])
    results["TIFU-KNN"] = _with_choice(
        aggregate_results([on_test(TIFUKNNScorer(log, **choice.option))]), choice, protocol)

    say("item-kNN: choosing k on validation")
    # One similarity per part with the largest k of the grid; each k takes its best entries.
    longest = max(o["neighbours"] for o in ITEM_KNN_GRID)
    similarity = item_similarity(log, train_only, longest)
    choice = choose_on_validation(ITEM_KNN_GRID, lambda o: on_val(
        ItemKNNScorer(log, train_only, similarity=similarity, **o)))
    results["item-kNN"] = _with_choice(
        aggregate_results([on_test(ItemKNNScorer(log, known, **choice.option))]), choice,
        protocol)
    return results


def _with_choice(result: dict, choice: Choice, protocol: str) -> dict:
    record = choice.record()
    record["chosen"] = _label(choice.option)
    record["protocol"] = protocol
    record["grid"] = [{"option": _label(g["option"]), "value": g["value"]} for g in choice.grid]
    return {**result, "choice": record}
