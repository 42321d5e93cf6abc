"""Workspace schema as forward migrations, created with sqlite-utils.

`MIGRATIONS[n]` brings a workspace from version n to n + 1. Never edit a released migration:
append a new one, so that every older workspace walks the same path forward.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import sqlite_utils

# "DYNL" as a big-endian int: lets us tell our workspaces from other SQLite files.
APPLICATION_ID = 0x44594E4C


def _v1_foundation(db: sqlite_utils.Database) -> None:
    db["imports"].create(
        {
            "id": int,
            "file": str,  # path as given, resolved
            "sha256": str,  # content hash of the main data file (folder: of its tables)
            "preset": str,
            "options": str,  # JSON: column mapping, time format, extra files
            "rows_read": int,
            "rows_kept": int,
            "rows_rejected": str,  # JSON object reason -> count
            "users_added": int,
            "items_added": int,
            "ts_min": int,
            "ts_max": int,
            "imported_at": str,  # ISO 8601 UTC
            "seconds": float,
        },
        pk="id",
        not_null={"file", "sha256", "preset", "rows_read", "rows_kept"},
    )
    db["imports"].create_index(["sha256"])
    # Rejected rows as runs of consecutive lines with one reason (lines `line`..`last_line`):
    # every input line is accounted for at a fifteenth of the rows, since rejects come in blocks
    # (a whole invoice without a customer). `raw` is the first line of the run as it read.
    db["rejects"].create(
        {"import_id": int, "reason": str, "line": int, "last_line": int, "raw": str},
        foreign_keys=[("import_id", "imports", "id")],
        not_null={"import_id", "line", "last_line", "reason"},
    )
    db["rejects"].create_index(["import_id", "reason"])
    db["users"].create(
        {"id": int, "external_id": str, "attributes": str, "import_id": int},
        pk="id",
        not_null={"external_id"},
        foreign_keys=[("import_id", "imports", "id")],
    )
    db["users"].create_index(["external_id"], unique=True)
    db["items"].create(
        {
            "id": int,
            "external_id": str,
            "title": str,
            "category": str,
            "brand": str,
            "price": float,
            "text": str,  # what the text encoder embeds: title + category + brand
            "attributes": str,
            "title_ts": int,  # time of the row the title came from (latest wins)
            "import_id": int,
        },
        pk="id",
        not_null={"external_id"},
        foreign_keys=[("import_id", "imports", "id")],
    )
    db["items"].create_index(["external_id"], unique=True)
    db["interactions"].create(
        {
            "id": int,
            "user_id": int,
            "item_id": int,
            "ts": int,  # Unix seconds, UTC (naive input times are taken as UTC)
            "quantity": float,
            "price": float,  # unit price
            "value": float,  # quantity x unit price, or the file's own sales value
            "basket": str,  # invoice / basket id: one basket = one timestamp
            "import_id": int,
            "line": int,  # line (CSV, JSON lines) or row (Parquet) in the source file
        },
        pk="id",
        not_null={"user_id", "item_id", "ts", "import_id"},
        foreign_keys=[
            ("user_id", "users", "id"),
            ("item_id", "items", "id"),
            ("import_id", "imports", "id"),
        ],
    )
    # One index: a user's timeline. Training reads the whole log and sorts it in numpy, so an
    # index on ts or item_id would only slow every import down.
    db["interactions"].create_index(["user_id", "ts"])


def _v2_profiles(db: sqlite_utils.Database) -> None:
    # One row per (user, as_of) snapshot; a failure keeps the raw answer and the error instead of
    # an invented profile. List facets are JSON arrays.
    db["profiles"].create(
        {
            "id": int,
            "user_id": int,
            "as_of": int,  # Unix seconds: made from interactions strictly before this time
            "status": str,  # "ok" | "failed"
            "crowd_segment": str,
            "interests": str,
            "preferred_categories": str,
            "favored_brands": str,
            "categories_source": str,  # "catalogue" | "derived_from_titles" | "unknown"
            "brands_source": str,
            "n_events": int,  # history size it was made from
            "model": str,
            "prompt_version": str,
            "input_hash": str,  # history + prompt version + model: unchanged means skip
            "raw": str,  # the model's answer as it came
            "error": str,
            "prompt_tokens": int,
            "output_tokens": int,
            "seconds": float,
            "created_at": str,
        },
        pk="id",
        not_null={"user_id", "as_of", "status", "model", "input_hash"},
        foreign_keys=[("user_id", "users", "id")],
    )
    db["profiles"].create_index(["user_id", "as_of"], unique=True)
    # Text vectors keyed by what was embedded, so a vector is recomputed only when its text is.
    db["embeddings"].create(
        {"kind": str, "key": str, "model": str, "text_hash": str, "dim": int, "vector": bytes},
        pk=("kind", "key", "model"),
        not_null={"text_hash", "dim", "vector"},
    )


def _v3_runs(db: sqlite_utils.Database) -> None:
    db["runs"].create(
        {
            "id": int,
            "created_at": str,
            "finished_at": str,
            "status": str,  # running | done | failed | cancelled
            "config": str,  # JSON: every training parameter and ablation switch
            "data_fingerprint": str,  # what the run was trained on (imports + profiles)
            "device": str,
            "epochs_done": int,
            "best_epoch": int,
            "history": str,  # JSON list: per-epoch loss and validation metrics
            "test_metrics": str,  # JSON: metrics of the best checkpoint on the test part
            "report": str,  # JSON: the model report (baselines and ablations side by side)
            "checkpoint_path": str,
            "error": str,
            "seconds": float,
            "active": int,  # 1 for the run whose recommendations the app shows
        },
        pk="id",
        not_null={"created_at", "status", "config"},
    )
    db["recommendations"].create(
        {"run_id": int, "user_id": int, "rank": int, "item_id": int, "score": float,
         "bought_before": int},
        pk=("run_id", "user_id", "rank"),
        foreign_keys=[("run_id", "runs", "id"), ("user_id", "users", "id"),
                      ("item_id", "items", "id")],
    )
    db["facet_weights"].create(
        {"run_id": int, "user_id": int, "ts": int, "crowd_segment": float, "interests": float,
         "categories": float, "brands": float},
        foreign_keys=[("run_id", "runs", "id"), ("user_id", "users", "id")],
    )
    db["facet_weights"].create_index(["run_id", "user_id", "ts"])
    db["memory_trace"].create(
        {"run_id": int, "user_id": int, "ts": int, "norm": float, "drift": float, "x": float,
         "y": float},
        foreign_keys=[("run_id", "runs", "id"), ("user_id", "users", "id")],
    )
    db["memory_trace"].create_index(["run_id", "user_id", "ts"])


# The facet columns of version 3, in the order their values were stored (the order of the
# network's facet axis at the time). Frozen here on purpose: a migration describes the past.
_V3_FACET_COLUMNS = ("crowd_segment", "interests", "categories", "brands")


def _v4_facet_weights_long(db: sqlite_utils.Database) -> None:
    """Facet weights as one row per (run, user, event time, facet): a run keeps any subset of
    facets (an ablation that keeps one has one row per event), and storage needs no list of
    facet names. Version-3 rows become four rows each, in the old column order."""
    db.execute("ALTER TABLE facet_weights RENAME TO facet_weights_v3")
    db["facet_weights"].create(
        {"run_id": int, "user_id": int, "ts": int, "facet": str, "weight": float},
        foreign_keys=[("run_id", "runs", "id"), ("user_id", "users", "id")],
        not_null={"run_id", "user_id", "ts", "facet", "weight"},
    )
    # rowid order of the new rows = old row order, then facet order: readers that keep
    # "as stored" order (the user detail, the exports) see what they saw before.
    facets = " UNION ALL ".join(
        f"SELECT {n} AS pos, '{name}' AS facet" for n, name in enumerate(_V3_FACET_COLUMNS))
    weight = "CASE f.facet " + " ".join(
        f"WHEN '{name}' THEN w.{name}" for name in _V3_FACET_COLUMNS) + " END"
    db.execute(
        "INSERT INTO facet_weights (run_id, user_id, ts, facet, weight) "
        f"SELECT w.run_id, w.user_id, w.ts, f.facet, {weight} "
        f"FROM facet_weights_v3 w CROSS JOIN ({facets}) f "
        f"WHERE {weight} IS NOT NULL ORDER BY w.rowid, f.pos"
    )
    db.execute("DROP TABLE facet_weights_v3")  # its index goes with it
    db["facet_weights"].create_index(["run_id", "user_id", "ts"])


def _v5_recommendation_lists(db: sqlite_utils.Database) -> None:
    """Three lists per user and run ('all', 'buy-again', 'discover'), each ranked from 1, and a
    one-line reason per recommendation. The key gains the list, so the table is made anew
    (SQLite cannot change a primary key); version-4 rows are the 'all' list, without reasons.
    The key leads with (run, list): one list of one run is one range of it, for the user
    detail (run, list, user), the exports (run, list) and "does this run have lists"."""
    db.execute("ALTER TABLE recommendations RENAME TO recommendations_v4")
    db["recommendations"].create(
        {"run_id": int, "list": str, "user_id": int, "rank": int, "item_id": int,
         "score": float, "bought_before": int, "reason": str},
        pk=("run_id", "list", "user_id", "rank"),
        not_null={"run_id", "list", "user_id", "rank", "item_id"},
        defaults={"list": "all"},
        foreign_keys=[("run_id", "runs", "id"), ("user_id", "users", "id"),
                      ("item_id", "items", "id")],
    )
    db.execute(
        "INSERT INTO recommendations (run_id, list, user_id, rank, item_id, score, "
        "bought_before) SELECT run_id, 'all', user_id, rank, item_id, score, bought_before "
        "FROM recommendations_v4 ORDER BY run_id, user_id, rank"
    )
    db.execute("DROP TABLE recommendations_v4")


def _v6_user_stats(db: sqlite_utils.Database) -> None:
    """Per-user statistics kept in the workspace (they were a TEMP table rebuilt by every new
    connection: 1.27 s for the first Users page at 16x Online Retail). One row per user, an
    index (column, user_id) for every column the Users screen sorts or filters by, the rowids
    the table was last refreshed at, and triggers that keep `segment` (the crowd segment of
    the user's latest ok profile) in step with every write to profiles. The rows are derived
    data, filled here by the same refresh an import runs (storage/user_stats.py)."""
    db.execute(
        "CREATE TABLE user_stats (user_id INTEGER PRIMARY KEY REFERENCES users(id), "
        "external_id TEXT NOT NULL, attribute TEXT, events INTEGER NOT NULL DEFAULT 0, "
        "purchases INTEGER NOT NULL DEFAULT 0, repeat_events INTEGER NOT NULL DEFAULT 0, "
        "first_ts INTEGER, last_ts INTEGER, segment TEXT)")
    for column in ("external_id", "attribute", "events", "first_ts", "last_ts", "segment"):
        db.execute(f"CREATE INDEX user_stats_{column} ON user_stats ({column}, user_id)")
    db.execute("CREATE TABLE user_stats_state (name TEXT PRIMARY KEY, value TEXT)")
    latest = ("(SELECT p.crowd_segment FROM profiles p WHERE p.user_id = {who}.user_id "
              "AND p.status = 'ok' ORDER BY p.as_of DESC LIMIT 1)")
    for event, who in (("INSERT", "NEW"), ("UPDATE", "NEW"), ("DELETE", "OLD")):
        extra = ""
        if event == "UPDATE":  # a profile moved to another user: the old user's segment too
            extra = (f"UPDATE user_stats SET segment = {latest.format(who='OLD')} "
                     "WHERE user_id = OLD.user_id AND OLD.user_id IS NOT NEW.user_id; ")
        db.execute(
            f"CREATE TRIGGER user_stats_segment_{event.lower()} AFTER {event} ON profiles "
            f"BEGIN UPDATE user_stats SET segment = {latest.format(who=who)} "
            f"WHERE user_id = {who}.user_id; {extra}END")
    from storage.user_stats import rebuild_user_stats

    rebuild_user_stats(db.conn)


def _v7_taxonomy(db: sqlite_utils.Database) -> None:
    """The taxonomy derived for a catalogue without categories (storage/taxonomy.py,
    models/profiles/taxonomy.py): one row per version (a digest of item set, k, seed, encoder,
    LLM, naming prompt), its named clusters, and every item's cluster."""
    db["taxonomies"].create(
        {"version": str, "k": int, "k_asked": int, "k_rule": str, "silhouettes": str,
         "seed": int,
         "encoder": str, "llm": str, "prompt_version": str, "n_items": int, "notes": str,
         "created_at": str},
        pk="version", not_null={"k", "seed"},
    )
    db["taxonomy_clusters"].create(
        {"version": str, "cluster": int, "name": str, "name_source": str, "size": int,
         "central_titles": str, "raw_answer": str},
        pk=("version", "cluster"), not_null={"name", "size"},
        foreign_keys=[("version", "taxonomies", "version")],
    )
    db["item_clusters"].create(
        {"version": str, "item_id": int, "cluster": int},
        pk=("version", "item_id"), not_null={"cluster"},
        foreign_keys=[("version", "taxonomies", "version"), ("item_id", "items", "id")],
    )


MIGRATIONS: list[Callable[[sqlite_utils.Database], None]] = [
    _v1_foundation,
    _v2_profiles,
    _v3_runs,
    _v4_facet_weights_long,
    _v5_recommendation_lists,
    _v6_user_stats,
    _v7_taxonomy,
]
SCHEMA_VERSION = len(MIGRATIONS)
