"""One profile from one history: prompt, constrained answer, validation, one retry.

A first answer that does not validate is retried once with another seed and a higher
temperature (a greedy-ish decode that failed would fail again the same way). A second failure
is returned as a failed ProfileResult that keeps both raw answers and the reason; nothing is
filled in.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from models.profiles.llm_backend import Completion, LocalLLM
from models.profiles.output import ProfileFacets, ProfileParseError, parse_profile
from models.profiles.prompt import (
    PROMPT_VERSION,
    UserHistory,
    build_messages,
    ground_segment,
    input_hash,
    profile_schema,
)

# (temperature, seed) per attempt.
ATTEMPTS = ((0.2, 0), (0.8, 1))
# A typical answer is 40-90 tokens; the cap leaves room for the longest phrases the schema
# allows and stops a degenerate loop early. An answer cut here does not parse: invalid.
MAX_TOKENS = 224
# Grammars cannot forbid repeated list entries; a mild penalty keeps a small model from writing
# the same phrase five times (the JSON syntax tokens are forced by the grammar regardless).
REPEAT_PENALTY = 1.15


@dataclass
class ProfileResult:
    user_id: str
    as_of: int | None
    ok: bool
    facets: ProfileFacets | None
    error: str | None  # why the last attempt failed; None when ok
    raw: list[str]  # every raw answer, in order
    categories_source: str
    brands_source: str
    category_candidates: list[str]
    brand_candidates: list[str]
    model: str
    prompt_version: str
    input_hash: str
    prompt_tokens: int = 0  # summed over attempts
    prompt_tokens_evaluated: int = 0  # of those, not served from the KV cache
    completion_tokens: int = 0
    prompt_eval_s: float = 0.0
    decode_s: float = 0.0
    wall_s: float = 0.0
    completions: list[Completion] = field(default_factory=list, repr=False)

    @property
    def attempts(self) -> int:
        return len(self.raw)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("completions")
        d["attempts"] = self.attempts
        return d


class Profiler:
    """Writes profiles with one loaded model; reuse one instance so the KV cache is shared."""

    def __init__(self, llm: LocalLLM, *, max_tokens: int = MAX_TOKENS,
                 repeat_penalty: float = REPEAT_PENALTY, reuse_prefix: bool = True) -> None:
        self.llm = llm
        self.repeat_penalty = repeat_penalty
        self.max_tokens = max_tokens
        self.reuse_prefix = reuse_prefix

    @property
    def model_name(self) -> str:
        return self.llm.name

    def input_hash(self, history: UserHistory) -> str:
        return input_hash(history, PROMPT_VERSION, self.llm.name)

    def profile(self, history: UserHistory) -> ProfileResult:
        """Profile one history. Raises ValueError for an empty history: with nothing bought
        there is nothing to profile, and the caller makes no snapshot."""
        if not history.events:
            raise ValueError(f"user {history.user_id}: no events before as_of={history.as_of}; "
                             "no snapshot to make")
        system, user, cands = build_messages(history)
        schema = profile_schema(cands)
        result = ProfileResult(
            user_id=str(history.user_id), as_of=history.as_of, ok=False, facets=None,
            error=None, raw=[], categories_source=cands.categories_source,
            brands_source=cands.brands_source, category_candidates=list(cands.categories),
            brand_candidates=list(cands.brands), model=self.llm.name,
            prompt_version=PROMPT_VERSION, input_hash=self.input_hash(history),
        )
        for temperature, seed in ATTEMPTS:
            c = self.llm.chat(system, user, schema=schema, max_tokens=self.max_tokens,
                              temperature=temperature, seed=seed,
                              repeat_penalty=self.repeat_penalty,
                              reuse_prefix=self.reuse_prefix)
            result.raw.append(c.text)
            result.completions.append(c)
            result.prompt_tokens += c.prompt_tokens
            result.prompt_tokens_evaluated += c.prompt_tokens_evaluated
            result.completion_tokens += c.completion_tokens
            result.prompt_eval_s += c.prompt_eval_s
            result.decode_s += c.decode_s
            result.wall_s += c.wall_s
            try:
                if c.finish_reason == "length":
                    raise ProfileParseError(f"the answer was cut at {self.max_tokens} tokens")
                facets = parse_profile(c.text, cands)
                result.facets = replace(facets, crowd_segment=ground_segment(
                    history, facets.crowd_segment))
            except ProfileParseError as exc:
                result.error = str(exc)
                continue
            result.ok, result.error = True, None
            break
        return result
