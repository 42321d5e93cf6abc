"""The derived taxonomy: k-means and silhouette on hand-made points, naming rules, bad input,
and the job on real Online Retail slices with the real encoder and LLM (cached, stable, every
item assigned), through the CLI too."""

from __future__ import annotations

import csv
import gzip
import json
import shutil

import numpy as np
import pytest

from dynllm_tui.jobs.imports import import_job
from dynllm_tui.jobs.taxonomy import derived_categories, ensure_taxonomy, taxonomy_job
from models.profiles.taxonomy import (
    EMPTY_TEXT,
    LLM,
    TITLE_WORDS,
    UNCATEGORISED,
    build_taxonomy,
    choose_k,
    fallback_name,
    kmeans,
    name_problem,
    parse_name,
    silhouette,
    taxonomy_version,
)
from storage.importer import run_import
from storage.presets import preset_spec
from storage.taxonomy import stored_taxonomy
from storage.workspace import Workspace
from tests.conftest import DEMO_SLICE, write_head


def _blobs(seed=0):
    """Three well-apart groups of 20 points in 5-d."""
    rng = np.random.default_rng(seed)
    centres = np.eye(5)[:3] * 10
    return np.concatenate([c + rng.normal(0, 0.3, (20, 5)) for c in centres])


def test_silhouette_by_hand():
    x = np.array([[0.0], [1.0], [10.0], [11.0]])
    # Point 0: a = 1, b = (10 + 11) / 2 = 10.5 -> 1 - 1/10.5; point 1: a = 1, b = 9.5.
    expected = ((1 - 1 / 10.5) + (1 - 1 / 9.5)) / 2
    assert silhouette(x, np.array([0, 0, 1, 1])) == pytest.approx(expected)
    assert silhouette(x, np.zeros(4, dtype=int)) == 0.0


def test_kmeans_finds_the_groups_and_is_stable_for_a_seed():
    x = _blobs()
    _, a = kmeans(x, 3, seed=7)
    _, b = kmeans(x, 3, seed=7)
    assert np.array_equal(a, b)
    assert sorted(np.bincount(a)) == [20, 20, 20]
    assert all(len(set(a[i:i + 20])) == 1 for i in (0, 20, 40))  # one label per true group
    with pytest.raises(ValueError, match="between 1 and the number of points"):
        kmeans(x[:2], 3)


def test_k_rule_prefers_the_true_k_and_skips_impossible_ones():
    x = _blobs()
    k, scores = choose_k(x, grid=(2, 3, 5, 8))
    assert k == 3 and max(scores, key=scores.get) == 3
    # Four distinct points: k of 4 or more cannot be judged, 2 and 3 are tried.
    k, scores = choose_k(np.repeat(np.eye(4), 3, axis=0), grid=(2, 3, 8))
    assert set(scores) == {2, 3}


def test_names_are_parsed_checked_and_fall_back():
    assert parse_name('{"name": " Garden  Tools "}') == "garden tools"
    assert parse_name('{"name": ""}') is None and parse_name("") is None
    assert parse_name("not json") is None and parse_name('{"name": 3}') is None
    assert parse_name('{"name": "one two three four five"}') is None  # not a short category
    titles = ["RED TEATIME MUG", "BLUE COFFEE MUG", "POTTERING MUG"]
    words = {"mug", "teatime", "coffee", "pottering"}
    assert name_problem("mugs", titles, words) is None
    assert name_problem("red teatime mug", titles, words) == "a copy of one product name"
    assert "no word in common" in name_problem("red curry", titles, words)
    assert fallback_name(["mug", "teatime"], set()) == "mug & teatime"
    assert fallback_name(["mug", "teatime"], {"mug & teatime"}) == "mug"


def test_bad_names_fall_back_to_title_words_and_each_name_is_unique():
    texts = ["RED TEATIME MUG", "BLUE COFFEE MUG", "GREEN MUG", "JUMBO BAG RED",
             "JUMBO BAG PINK", "LUNCH BAG RED"]
    keys = [str(i) for i in range(6)]
    x = np.array([[1.0, 0], [0.9, 0.1], [0.95, 0.05], [0, 1.0], [0.1, 0.9], [0.05, 0.95]])
    # The same answer for both clusters: right for the mugs, made up for the bags.
    tax = build_taxonomy(keys, texts, x, k=2, namer=lambda system, user: '{"name": "Mugs"}')
    by_item = dict(zip(texts, zip(tax.names(), (tax.clusters[i].name_source
                                                for i in tax.assignment), strict=True),
                       strict=True))
    assert by_item["GREEN MUG"] == ("mugs", LLM)
    assert by_item["LUNCH BAG RED"] == ("bag & jumbo", TITLE_WORDS)
    assert any("no word in common" in n for n in tax.notes)
    # A word both clusters share: the second cluster may not take the first one's name.
    same = build_taxonomy(keys, texts, x, k=2, namer=lambda system, user: '{"name": "red"}')
    assert sorted(c.name_source for c in same.clusters) == [LLM, TITLE_WORDS]
    assert len({c.name for c in same.clusters}) == 2
    assert any("already used" in n for n in same.notes)
    garbage = build_taxonomy(keys, texts, x, k=2, namer=lambda system, user: "}{ no json")
    assert [c.name_source for c in garbage.clusters] == [TITLE_WORDS, TITLE_WORDS]


def test_all_titles_empty_is_one_uncategorised_cluster_without_the_llm():
    calls = []
    tax = build_taxonomy(["a", "b", "c"], ["", "  ", ""], np.zeros((3, 4)),
                         namer=lambda s, u: calls.append(u) or '{"name":"x"}')
    assert calls == [] and tax.k == 0
    assert [(c.name, c.name_source, c.size) for c in tax.clusters] == [
        (UNCATEGORISED, EMPTY_TEXT, 3)]
    assert tax.names() == [UNCATEGORISED] * 3
    assert "no item has a text" in tax.k_rule


def test_fewer_distinct_items_than_k():
    x = np.array([[1.0, 0], [0, 1.0], [0, 1.0], [0.7, 0.7]])
    tax = build_taxonomy(list("abcd"), ["MUG", "BAG", "BAG", "TIN"], x, k=10, namer=None)
    assert tax.k == 3 and (tax.assignment >= 0).all()
    assert tax.assignment[1] == tax.assignment[2]
    assert "only 3 distinct item texts" in tax.notes[0]
    with pytest.raises(ValueError, match="k must be at least 1"):
        build_taxonomy(["a"], ["MUG"], x[:1], k=0, namer=None)


def test_version_follows_the_catalogue_k_and_seed():
    base = taxonomy_version(["1", "2"], ["MUG", "BAG"], None, 0, "enc", "llm")
    assert base == taxonomy_version(["2", "1"], ["BAG", "MUG"], None, 0, "enc", "llm")
    others = {taxonomy_version(["1", "2"], ["MUG", "BAGS"], None, 0, "enc", "llm"),
              taxonomy_version(["1", "2", "3"], ["MUG", "BAG", "TIN"], None, 0, "enc", "llm"),
              taxonomy_version(["1", "2"], ["MUG", "BAG"], 5, 0, "enc", "llm"),
              taxonomy_version(["1", "2"], ["MUG", "BAG"], None, 1, "enc", "llm"),
              taxonomy_version(["1", "2"], ["MUG", "BAG"], None, 0, "enc", "other")}
    assert base not in others and len(others) == 5


# --- the job on real data ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def slice_db(tmp_path_factory, online_retail_path):
    """The first 3,000 lines of Online Retail (about 1,300 items), imported."""
    folder = tmp_path_factory.mktemp("taxonomy")
    data = write_head(online_retail_path, folder / "head.csv", 3000)
    db = folder / "ws.db"
    with Workspace.open(db) as ws:
        run_import(ws, preset_spec("online-retail", data))
    return db


@pytest.fixture(scope="module")
def first_run(slice_db):
    return taxonomy_job(slice_db)


def test_every_item_gets_a_named_cluster(slice_db, first_run):
    s = first_run
    assert not s.reused and not s.catalogue_categories
    assert s.llm_calls == s.k and 8 <= s.k <= 48 and "silhouette" in s.k_rule
    with Workspace.open(slice_db, create=False) as ws:
        items = ws.conn.execute("SELECT count(*) FROM items").fetchone()[0]
        assigned = ws.conn.execute("SELECT count(*) FROM item_clusters").fetchone()[0]
        names = derived_categories(ws)
        vectors = ws.conn.execute("SELECT count(*) FROM embeddings WHERE kind = 'item'"
                                  ).fetchone()[0]
    assert s.items == items == assigned == len(names) and s.embedded == vectors > 0
    assert sum(c["size"] for c in s.clusters) == items
    assert len({c["name"] for c in s.clusters}) == len(s.clusters)  # names are unique
    assert all(c["name"] and c["central_titles"] for c in s.clusters)
    assert set(names.values()) == {c["name"] for c in s.clusters}


def test_cache_is_reused_and_the_assignment_is_stable(slice_db, first_run):
    with Workspace.open(slice_db, create=False) as ws:
        before = derived_categories(ws)
        again = ensure_taxonomy(ws)
        assert derived_categories(ws) == before
    assert again.reused and again.llm_calls == 0 and again.embedded == 0
    assert again.version == first_run.version and again.clusters == first_run.clusters
    # Recomputed from the stored vectors with the same seed (no LLM): the same clusters.
    from models.profiles.taxonomy import build_taxonomy as rebuild
    from storage.profiles import load_embeddings
    from storage.taxonomy import item_texts

    with Workspace.open(slice_db, create=False) as ws:
        rows = item_texts(ws)
        keys, matrix = load_embeddings(ws, "item", "all-MiniLM-L6-v2/mean-l2")
        stored = dict(ws.conn.execute("SELECT item_id, cluster FROM item_clusters"))
    row = {k: i for i, k in enumerate(keys)}
    x = np.stack([matrix[row[str(i)]] for i, _ in rows])
    tax = rebuild([str(i) for i, _ in rows], [t for _, t in rows], x, namer=None)
    assert tax.assignment.tolist() == [stored[i] for i, _ in rows]


def test_cli_shows_clusters_with_sizes_and_names(slice_db, first_run, capsys):
    from dynllm_tui.cli import main

    assert main(["--db", str(slice_db), "taxonomy"]) == 0
    out = capsys.readouterr().out
    assert f"{len(first_run.clusters)} clusters over" in out and "reused" in out
    biggest = max(first_run.clusters, key=lambda c: c["size"])
    assert f"{biggest['size']:>7,}  {biggest['name']}" in out
    assert main(["--db", str(slice_db), "taxonomy", "--k", "0"]) == 2
    assert "--k must be at least 1" in capsys.readouterr().err


def test_a_new_catalogue_makes_a_new_version(slice_db, first_run, tmp_path):
    db = tmp_path / "ws.db"
    shutil.copy(slice_db, db)
    with Workspace.open(db, create=False) as ws:
        with ws.transaction() as conn:
            conn.execute("UPDATE items SET text = 'MYSTERY ' || text WHERE id = 1")
        fresh = ensure_taxonomy(ws, k=3)
        assert fresh.version != first_run.version and not fresh.reused and fresh.k == 3
        assert stored_taxonomy(ws, first_run.version) is None  # the old version is gone
        # The profile job's entry point keeps the stored k while the catalogue is unchanged.
        assert ensure_taxonomy(ws, k=3).reused
        assert len(set(derived_categories(ws).values())) == 3


def _generic_csv(path, extra_columns=()):
    """Real demo lines as a generic file without titles (and optional extra columns)."""
    with gzip.open(DEMO_SLICE, "rt", encoding="utf-8", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["CustomerID"]][:300]
    with path.open("w", newline="") as out:
        w = csv.writer(out)
        w.writerow(["client", "sku", "when", *extra_columns])
        for r in rows:
            w.writerow([r["CustomerID"], r["StockCode"], r["InvoiceDate"],
                        *(r[c] for c in extra_columns)])
    return path


def test_job_on_a_catalogue_without_titles(tmp_path):
    db = tmp_path / "ws.db"
    import_job(db, _generic_csv(tmp_path / "x.csv"),
               mapping=["user=client", "item=sku", "time=when"])
    # The importer titles an item without a title by its id: a code, not a text.
    s = taxonomy_job(db)
    assert s.llm_calls == 0 and s.embedded == 0 and s.items > 50
    assert [(c["name"], c["size"]) for c in s.clusters] == [(UNCATEGORISED, s.items)]
    assert json.dumps(s.as_dict())  # printable as the CLI's --json
    with Workspace.open(db, create=False) as ws:
        # Every item has its cluster; none is offered to the LLM as a category.
        assert ws.conn.execute("SELECT count(*) FROM item_clusters").fetchone()[0] == s.items
        assert derived_categories(ws) == {}


def test_catalogue_categories_are_used_as_they_are(tmp_path):
    db = tmp_path / "ws.db"
    import_job(db, _generic_csv(tmp_path / "x.csv", ("Country",)),
               mapping=["user=client", "item=sku", "time=when", "category=Country"])
    s = taxonomy_job(db)
    assert s.catalogue_categories and s.clusters == [] and s.llm_calls == 0
    with Workspace.open(db, create=False) as ws:
        assert derived_categories(ws) == {} and stored_taxonomy(ws) is None
