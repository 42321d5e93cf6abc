"""The model report: DynLLM, its ablations and the baselines on one split, one seed, one set
of candidates — rows = methods, columns = metrics (see evaluation.format_report)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace

import torch

from models.data.events import EventLog, chronological_split
from models.data.profile_index import ProfileIndex
from models.evaluation.baselines import BPRMF, PopularityScorer, RepeatScorer
from models.evaluation.protocols import evaluate_scorer, model_report
from models.network.dynllm import DynLLMConfig
from models.training.loop import Progress, TrainConfig, train
from models.vocabulary import ABLATIONS


def method_label(config: DynLLMConfig, *, with_profiles: bool, ablation: str | None = None) -> str:
    """The report's name for a DynLLM variant, e.g. 'DynLLM + repeat term no_distill'."""
    label = "DynLLM" + ("" if with_profiles else " (no profiles)")
    if config.repeat_term:
        label += " + repeat term"
    return label if ablation is None else f"{label} {ablation}"


def baseline_results(log: EventLog, config: TrainConfig) -> dict[str, dict]:
    """{method: {"full": metrics, "paper": metrics}} for the three baselines."""
    split = chronological_split(log, config.train_frac, config.val_frac)
    known = range(0, split.test.start)  # BPR-MF learns from train + validation only
    scorers = [PopularityScorer(log), RepeatScorer(log),
               BPRMF.fit(log, known, seed=config.seed)]
    return {s.name: evaluate_scorer(s, log, split, batch_size=config.batch_size, ks=config.ks)
            for s in scorers}


def run_model_report(
    log: EventLog,
    item_text: torch.Tensor | None,
    profiles: ProfileIndex | None,
    model_config: DynLLMConfig,
    train_config: TrainConfig,
    *,
    ablations: Iterable[str] = ABLATIONS,
    repeat_counterpart: bool = True,
    progress: Callable[[str, Progress | None], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> list[dict]:
    """Train DynLLM and each ablation (same split and seed), evaluate the baselines, and return
    the report rows. Profile ablations are skipped when there are no profiles. With
    `repeat_counterpart` the same model with the repeat term toggled is trained too, so the
    report always shows the paper's model beside the one with the repeat term."""
    results: dict[str, dict] = {}
    with_profiles = profiles is not None
    if not with_profiles:
        model_config = replace(model_config, no_profiles=True)
    variants = {method_label(model_config, with_profiles=with_profiles): model_config}
    if repeat_counterpart:
        other = replace(model_config, repeat_term=not model_config.repeat_term)
        variants[method_label(other, with_profiles=with_profiles)] = other
    for name in ablations:
        if not with_profiles and (name == "no_profiles" or name.startswith("facet:")
                                  or name == "no_distill"):
            continue  # without profiles these equal plain DynLLM (trained with no_profiles)
        variants[method_label(model_config, with_profiles=with_profiles, ablation=name)] = (
            model_config.ablation(name))
    for label, cfg in variants.items():
        if should_stop is not None and should_stop():
            break
        def relay(p: Progress, label: str = label) -> None:
            if progress is not None:
                progress(label, p)
        result = train(log, item_text, profiles, cfg, train_config, progress=relay,
                       should_stop=should_stop)
        if result.test:
            results[label] = result.test
    if progress is not None:
        progress("baselines", None)
    results.update(baseline_results(log, train_config))
    return model_report(results)
