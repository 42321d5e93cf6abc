"""The names every part of the project shares: the profile facets and the ablations.

Defined once, here, and torch-free so the CLI and the app can read them without loading the
network. A facet has three spellings for three readers: `name` is what the network, the run
config, `--ablation facet:NAME` and the stored facet weights use; `profile_field` is the key of
the LLM's JSON answer and the column of the `profiles` table; `label` is what the analyst reads.
The order of FACETS is the order of the facet axis of every profile tensor.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Facet:
    name: str
    profile_field: str
    label: str


FACET_SPECS: tuple[Facet, ...] = (
    Facet("crowd_segment", "crowd_segment", "crowd segment"),
    Facet("interests", "interests", "interests"),
    Facet("categories", "preferred_categories", "preferred categories"),
    Facet("brands", "favored_brands", "favoured brands"),
)
FACETS: tuple[str, ...] = tuple(f.name for f in FACET_SPECS)
PROFILE_FIELDS: tuple[str, ...] = tuple(f.profile_field for f in FACET_SPECS)
FACET_LABELS: dict[str, str] = {f.name: f.label for f in FACET_SPECS}

# Switches of DynLLMConfig.ablation: each turns one part of the model off, or keeps one facet.
ABLATIONS: tuple[str, ...] = (
    "no_profiles", "no_distill", "no_time_projection", "no_neighbours",
) + tuple(f"facet:{name}" for name in FACETS)
