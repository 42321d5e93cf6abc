"""Profiles that put the demo's seven most active customers into three crowd segments, written
through `storage.profiles.save_profile` as the profile job writes them: each customer also gets
an older ok snapshot in another segment and a newer failed one, neither of which counts."""

from __future__ import annotations

from pathlib import Path

from storage.profiles import save_profile
from storage.workspace import Workspace

GIFT, PARTY, SOLO = "Gift shop wholesaler", "Party planner", "Solo buyer"
# Customers by rank of events (0 = most active) -> their latest ok segment.
PLAN = {0: GIFT, 1: GIFT, 2: GIFT, 3: PARTY, 4: PARTY, 5: PARTY, 6: SOLO}


def ranked_users(conn) -> list[int]:
    return [u for (u,) in conn.execute(
        "SELECT user_id FROM interactions GROUP BY user_id ORDER BY count(*) DESC, user_id")]


def add_segment_profiles(db: Path) -> None:
    with Workspace.open(db) as ws:
        users = ranked_users(ws.conn)
        for rank, segment in PLAN.items():
            save_profile(ws, users[rank], 1_300_000_000, {
                "status": "ok", "crowd_segment": "Earlier segment", "model": "m",
                "input_hash": "a"})
            save_profile(ws, users[rank], 1_310_000_000, {
                "status": "ok", "crowd_segment": segment, "model": "m", "input_hash": "b"})
            save_profile(ws, users[rank], 1_320_000_000, {
                "status": "failed", "model": "m", "input_hash": "c"})
