"""Why each recommended item: one line per (user, item) from stored evidence, made at replay.

A reason has up to three parts, each left out when its evidence is missing:
- the purchase history of the pair: "bought 3 times, last 12 days ago" (the repeat term's
  evidence; times are baskets, days count back from the end of the log), or "new to this
  customer";
- the facet the model weighed most at the user's latest event, with its text from the user's
  latest ok profile: "interests: party goods, kitchenware" (none for a run without profiles, a
  user without a weighed event or without an ok profile);
- the bought item whose text vector is nearest (cosine) to the recommended one, itself left
  aside: "like PARTY BUNTING" (none without item text vectors).

Plain numpy over dense indices (the `EventLog`'s), chunked per user and per block of the user's
bought items, so the whole Online Retail file (4.3k users x 150 recommendations) takes seconds
and memory stays a few blocks wide.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np

from models.data.events import DAY
from models.vocabulary import FACET_LABELS, FACET_SPECS

SEPARATOR = "; "
NEW_ITEM = "new to this customer"
FACET_TEXT_MAX = 60  # characters of a facet's text in a reason (one line in a table)
FACET_LIST_MAX = 3  # entries of a list facet (interests, categories, brands)
SIMILAR_BLOCK = 2048  # bought items compared at once: bounds a user's similarity block
# "like X" needs some likeness: an orthogonal (or opposite) text vector is no evidence.
MIN_SIMILARITY = 0.0


def _pair_keys(users: np.ndarray, items: np.ndarray, n_items: int) -> np.ndarray:
    return users.astype(np.int64) * n_items + items.astype(np.int64)


def purchase_history(log: Any, users: np.ndarray, items: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray]:
    """(times bought, time of the last purchase) of each (user, item) pair: times are distinct
    baskets (the log's basket groups, else distinct event times); 0 and NaN for a pair never
    bought."""
    keys = _pair_keys(log.user_idx, log.item_idx, log.n_items)
    basket = log.group if log.group is not None else log.ts.view(np.int64)
    # One row per (pair, basket): a basket listing the item twice is one purchase.
    pair_baskets = np.unique(np.stack((keys, basket), axis=1), axis=0)
    pair_keys, counts = np.unique(pair_baskets[:, 0], return_counts=True)
    last = np.full(len(pair_keys), -np.inf)
    np.maximum.at(last, np.searchsorted(pair_keys, keys), log.ts)

    wanted = _pair_keys(users, items, log.n_items)
    if not len(pair_keys):
        return np.zeros(len(wanted), np.int64), np.full(len(wanted), np.nan)
    at = np.minimum(np.searchsorted(pair_keys, wanted), len(pair_keys) - 1)
    found = pair_keys[at] == wanted
    return np.where(found, counts[at], 0).astype(np.int64), np.where(found, last[at], np.nan)


def most_similar_bought(log: Any, users: np.ndarray, items: np.ndarray, item_text: np.ndarray,
                        block: int = SIMILAR_BLOCK) -> np.ndarray:
    """For each (user, item) pair, the item the user bought whose text vector has the highest
    cosine with the item's, the item itself excluded; -1 when the user bought nothing else or
    nothing with a cosine above MIN_SIMILARITY."""
    vectors = np.asarray(item_text, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    unit = vectors / np.maximum(norms, 1e-12)  # an empty text (zero vector) stays zero
    bought = np.unique(_pair_keys(log.user_idx, log.item_idx, log.n_items))
    best = np.full(len(users), -1, dtype=np.int64)
    order = np.argsort(users, kind="stable")
    starts = np.flatnonzero(np.r_[True, np.diff(users[order]) != 0]) if len(users) else []
    bounds = np.r_[starts, len(users)]
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        rows = order[lo:hi]
        user = int(users[rows[0]])
        first, last = np.searchsorted(bought, [user * log.n_items, (user + 1) * log.n_items])
        candidates = bought[first:last] % log.n_items
        targets = items[rows]
        target_unit = unit[targets]
        best_sim = np.full(len(rows), MIN_SIMILARITY, dtype=np.float32)
        for c in range(0, len(candidates), block):
            chunk = candidates[c:c + block]
            sims = target_unit @ unit[chunk].T
            sims[targets[:, None] == chunk[None, :]] = -np.inf  # never "like itself"
            pick = sims.argmax(axis=1)
            value = sims[np.arange(len(rows)), pick]
            better = value > best_sim
            best_sim[better] = value[better]
            best[rows[better]] = chunk[pick[better]]
    return best


def _facet_text(value: Any) -> str:
    """A profile facet as reason text: a list facet's first entries, a text facet as it is;
    cut to one short line."""
    if isinstance(value, list):
        entries = [str(v).strip() for v in value if str(v).strip()]
        text = ", ".join(entries[:FACET_LIST_MAX])
    else:
        text = str(value or "").strip()
    text = " ".join(text.split())  # one line, whatever the LLM wrote
    return text if len(text) <= FACET_TEXT_MAX else text[:FACET_TEXT_MAX - 1].rstrip() + "…"


def latest_profile_facets(ws: Any, user_ids: Sequence[int]) -> dict[int, dict[str, str]]:
    """Users' latest ok profile as {facet name: reason text} (empty facets left out), keyed by
    users.id; users without an ok profile are absent."""
    wanted = {int(u) for u in user_ids}
    fields = ", ".join(f.profile_field for f in FACET_SPECS)
    # SQLite returns the other columns of the row that holds max(as_of) (a documented rule).
    rows = ws.conn.execute(
        f"SELECT user_id, max(as_of), {fields} FROM profiles WHERE status = 'ok' "
        "GROUP BY user_id")
    out: dict[int, dict[str, str]] = {}
    for user, _as_of, *values in rows:
        if user not in wanted:
            continue
        facets = {}
        for spec, raw in zip(FACET_SPECS, values, strict=True):
            value = raw
            if spec.profile_field != "crowd_segment":
                try:
                    value = json.loads(raw) if raw else []
                except ValueError:
                    value = raw  # a damaged cell: its text as it is
            text = _facet_text(value)
            if text:
                facets[spec.name] = text
        out[user] = facets
    return out


def top_facet_at_latest_event(facet_weights: Any) -> dict[int, str]:
    """Dense user index -> name of the facet with the highest weight at the user's latest
    weighed event (`models.training.replay.FacetWeights`, rows in time order)."""
    if facet_weights is None or len(facet_weights.users) == 0:
        return {}
    users = np.asarray(facet_weights.users)
    # The last row of each user: the first of each user in the reversed rows.
    reversed_users = users[::-1]
    _, first_reversed = np.unique(reversed_users, return_index=True)
    last_rows = len(users) - 1 - first_reversed
    top = np.asarray(facet_weights.weights)[last_rows].argmax(axis=1)
    return {int(users[r]): facet_weights.facets[int(f)]
            for r, f in zip(last_rows, top, strict=True)}


def _history_text(count: int, last: float, end: float) -> str:
    if count <= 0:
        return NEW_ITEM
    times = "once" if count == 1 else "twice" if count == 2 else f"{count} times"
    days = int(max(end - last, 0.0) // DAY)
    ago = "under a day ago" if days == 0 else "1 day ago" if days == 1 else f"{days} days ago"
    return f"bought {times}, last {ago}"


def recommendation_reasons(
    log: Any,
    users: np.ndarray,
    items: np.ndarray,
    *,
    end: float,
    titles: Sequence[str],
    item_text: np.ndarray | None = None,
    user_facet: dict[int, str] | None = None,
    facet_texts: dict[int, dict[str, str]] | None = None,
) -> list[str]:
    """One reason per (dense user, dense item) pair (see the module docstring).

    `end` is the time days are counted back from (the replay's time); `titles[i]` names dense
    item i; `user_facet` maps a dense user to the facet weighed most at their latest event
    (`top_facet_at_latest_event`) and `facet_texts` a dense user to their latest ok profile's
    facet texts (`latest_profile_facets`): either missing leaves the facet part out."""
    users = np.asarray(users, dtype=np.int64)
    items = np.asarray(items, dtype=np.int64)
    counts, last = purchase_history(log, users, items)
    similar = (most_similar_bought(log, users, items, item_text) if item_text is not None
               else np.full(len(users), -1, dtype=np.int64))
    user_facet = user_facet or {}
    facet_texts = facet_texts or {}
    # The facet part is the same for every item of a user: made once per user.
    facet_part: dict[int, str] = {}
    for user, facet in user_facet.items():
        text = facet_texts.get(user, {}).get(facet)
        if text:
            facet_part[user] = f"{FACET_LABELS.get(facet, facet)}: {text}"
    reasons = []
    for user, count, when, like in zip(users.tolist(), counts.tolist(), last.tolist(),
                                       similar.tolist(), strict=True):
        parts = [_history_text(count, when, end)]
        if user in facet_part:
            parts.append(facet_part[user])
        if like >= 0:
            parts.append(f"like {titles[like]}")
        reasons.append(SEPARATOR.join(parts))
    return reasons
