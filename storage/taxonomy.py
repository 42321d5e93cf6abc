"""Workspace side of the derived taxonomy: the catalogue's texts in, the stored clusters out.

A taxonomy is stored under its version (a digest of the item set, k, seed, encoder, LLM and
naming prompt, computed by models.profiles.taxonomy): `taxonomies` holds one row per version,
`taxonomy_clusters` its named clusters, `item_clusters` every item's cluster. Saving a new
version removes the older ones (the catalogue changed; nothing reads them again). Plain data in
and out, as in storage.profiles.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from storage.workspace import Workspace


def catalogue_has_categories(ws: Workspace) -> bool:
    """True when any item carries a category of its own (then no taxonomy is derived)."""
    return ws.conn.execute(
        "SELECT 1 FROM items WHERE category IS NOT NULL AND trim(category) != '' LIMIT 1"
    ).fetchone() is not None


def item_texts(ws: Workspace) -> list[tuple[int, str]]:
    """(item id, text) of every item, by id. A NULL text is '', and so is a text that is only
    the item's own id: an importer without a title column titles an item by its id, and a
    code like "85123A" says nothing about what the item is."""
    return [(i, t or "") for i, t in ws.conn.execute(
        "SELECT id, CASE WHEN text = external_id THEN '' ELSE text END FROM items ORDER BY id")]


def save_taxonomy(ws: Workspace, record: dict[str, Any], clusters: list[dict[str, Any]],
                  assignment: list[tuple[int, int]]) -> None:
    """Store one taxonomy in one transaction and drop every other version. `record`: version,
    k, k_asked (None: chosen by the rule), k_rule, silhouettes, seed, encoder, llm,
    prompt_version, notes; `clusters`: cluster,
    name, name_source, size, central_titles, raw_answer; `assignment`: (item_id, cluster)."""
    version = record["version"]
    with ws.transaction() as conn:
        for table in ("item_clusters", "taxonomy_clusters", "taxonomies"):
            conn.execute(f"DELETE FROM {table}")  # noqa: S608 - fixed names
        conn.execute(
            "INSERT INTO taxonomies (version, k, k_asked, k_rule, silhouettes, seed, encoder, "
            "llm, prompt_version, n_items, notes, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            (version, record["k"], record.get("k_asked"), record["k_rule"],
             json.dumps(record.get("silhouettes", {})),
             record["seed"], record["encoder"], record["llm"], record["prompt_version"],
             len(assignment), json.dumps(record.get("notes", [])),
             datetime.now(UTC).isoformat(timespec="seconds")),
        )
        conn.executemany(
            "INSERT INTO taxonomy_clusters (version, cluster, name, name_source, size, "
            "central_titles, raw_answer) VALUES (?,?,?,?,?,?,?)",
            [(version, c["cluster"], c["name"], c["name_source"], c["size"],
              json.dumps(c.get("central_titles", []), ensure_ascii=False), c.get("raw_answer"))
             for c in clusters],
        )
        conn.executemany(
            "INSERT INTO item_clusters (version, item_id, cluster) VALUES (?,?,?)",
            [(version, item, cluster) for item, cluster in assignment],
        )


def stored_taxonomy(ws: Workspace, version: str | None = None) -> dict[str, Any] | None:
    """The stored taxonomy of `version` (None: whichever is stored) with its clusters, or None.
    """
    sql = "SELECT * FROM taxonomies" + (" WHERE version = ?" if version else "") + " LIMIT 1"
    cursor = ws.conn.execute(sql, (version,) if version else ())
    row = cursor.fetchone()
    if row is None:
        return None
    record = dict(zip([d[0] for d in cursor.description], row, strict=True))
    record["silhouettes"] = {int(k): v for k, v in json.loads(record["silhouettes"]).items()}
    record["notes"] = json.loads(record["notes"] or "[]")
    cursor = ws.conn.execute(
        "SELECT cluster, name, name_source, size, central_titles, raw_answer "
        "FROM taxonomy_clusters WHERE version = ? ORDER BY cluster", (record["version"],))
    record["clusters"] = [
        {"cluster": c, "name": n, "name_source": s, "size": size,
         "central_titles": json.loads(titles or "[]"), "raw_answer": raw}
        for c, n, s, size, titles, raw in cursor
    ]
    return record


def item_category_names(ws: Workspace, version: str) -> dict[int, str]:
    """item id -> its cluster's name, for one stored version."""
    return dict(ws.conn.execute(
        "SELECT ic.item_id, tc.name FROM item_clusters ic JOIN taxonomy_clusters tc "
        "ON tc.version = ic.version AND tc.cluster = ic.cluster WHERE ic.version = ?",
        (version,)))
