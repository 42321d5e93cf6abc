"""The model report: DynLLM, its ablations and the baselines on one split and one set of
candidates, over one or more seeds (mean ± sd) — rows = methods, columns = metrics with
repeat/explore columns (see protocols.format_report). Options are chosen on validation only:
the repeat term on/off by DynLLM's best validation figure, the baselines' settings by
models.evaluation.tuning; the report records the grids and the deciding figures."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace

import torch

from models.data.events import EventLog, chronological_split
from models.data.profile_index import ProfileIndex
from models.evaluation.profile_text import tuned_profile_text_results
from models.evaluation.protocols import dataset_summary, model_report
from models.evaluation.seeds import aggregate_results, seed_list
from models.evaluation.selection import choose_on_validation
from models.evaluation.tuning import tuned_baseline_results
from models.network.dynllm import DynLLMConfig
from models.training.loop import STOP_METRIC, Progress, TrainConfig, TrainResult, train
from models.vocabulary import ABLATIONS


def method_label(config: DynLLMConfig, *, with_profiles: bool, ablation: str | None = None) -> str:
    """The report's name for a DynLLM variant, e.g. 'DynLLM + repeat term no_distill'."""
    label = "DynLLM" + ("" if with_profiles else " (no profiles)")
    if config.repeat_term:
        label += " + repeat term"
    if config.text_term and with_profiles:
        label += " + text term"
    return label if ablation is None else f"{label} {ablation}"


def baseline_results(log: EventLog, config: TrainConfig, *, n_seeds: int = 1,
                     progress: Callable[[str], None] | None = None,
                     should_stop: Callable[[], bool] | None = None,
                     item_text: torch.Tensor | None = None,
                     profiles: ProfileIndex | None = None) -> dict[str, dict]:
    """{method: {protocol: metrics, "choice": record}} for the baselines on the run's split and
    batches, settings chosen on validation (models.evaluation.tuning). With item text vectors
    and profiles of one encoder, also the profile-text scorer and its popularity mix
    (models.evaluation.profile_text): can a profile reach items the user never bought?"""
    split = chronological_split(log, config.train_frac, config.val_frac)
    results = tuned_baseline_results(log, split, batch_size=config.batch_size, ks=config.ks,
                                     seed=config.seed, n_seeds=n_seeds, progress=progress,
                                     should_stop=should_stop)
    if (item_text is not None and profiles is not None and len(profiles.as_of)
            and item_text.shape[1] == profiles.dim
            and (profiles.facet_mask is None or bool(profiles.facet_mask.any()))):
        results.update(tuned_profile_text_results(
            log, split, item_text, profiles, batch_size=config.batch_size, ks=config.ks,
            progress=progress, should_stop=should_stop))
    return results


def validation_figure(result: TrainResult) -> float | None:
    """The validation figure training kept its best epoch by (STOP_METRIC)."""
    if result.best_epoch is None:
        return None
    record = next(r for r in result.epochs if r.epoch == result.best_epoch)
    return float(record.val[STOP_METRIC])


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
    n_seeds: int = 1,
    with_baselines: bool = True,
) -> list[dict]:
    """Train DynLLM and each ablation (same split and seed), evaluate the baselines, and return
    the report rows. Profile ablations are skipped when there are no profiles. With
    `repeat_counterpart` the same model with the repeat term toggled is trained too, so the
    report always shows the paper's model beside the one with the repeat term, and records which
    of the two validation chose. With `n_seeds` every DynLLM row and BPR-MF are trained once
    per seed (train_config.seed, +1, ...) and shown as mean ± sd."""
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
    seeds = seed_list(train_config.seed, n_seeds)
    val_figures: dict[str, list[float]] = {}
    for label, cfg in variants.items():
        per_seed = []
        for seed in seeds:
            if should_stop is not None and should_stop():
                break
            def relay(p: Progress, label: str = label, seed: int = seed) -> None:
                if progress is not None:
                    progress(label if len(seeds) == 1 else f"{label} (seed {seed})", p)
            result = train(log, item_text, profiles, cfg, replace(train_config, seed=seed),
                           progress=relay, should_stop=should_stop)
            if result.test:
                per_seed.append(result.test)
                val_figures.setdefault(label, []).append(validation_figure(result))
        if per_seed:
            results[label] = aggregate_results(per_seed)
    if repeat_counterpart:
        # The repeat term on or off: chosen by the mean validation figure, never by test.
        pair = [lbl for lbl in list(variants)[:2] if lbl in val_figures]
        if len(pair) == 2:
            choice = choose_on_validation(
                pair, lambda lbl: {STOP_METRIC: sum(val_figures[lbl]) / len(val_figures[lbl])},
                STOP_METRIC)
            results[choice.option]["choice"] = {
                **choice.record(), "chosen": "repeat term " + (
                    "on" if variants[choice.option].repeat_term else "off"),
                "protocol": "full"}
    if with_baselines:  # False: the baselines are run elsewhere (bench/quality.py --only)
        if progress is not None:
            progress("baselines", None)
        results.update(baseline_results(log, train_config, n_seeds=n_seeds,
                                        should_stop=should_stop, item_text=item_text,
                                        profiles=profiles))
    split = chronological_split(log, train_config.train_frac, train_config.val_frac)
    return model_report(results, dataset_summary(log, split))
