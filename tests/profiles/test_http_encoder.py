"""Text vectors from a real /v1/embeddings endpoint: llama-cpp-python's server with
`--embedding true` on the packaged SmolLM2 (576 dimensions, against the packaged encoder's 384).
"""

from __future__ import annotations

import numpy as np
import pytest

from dynllm_tui.jobs.profiles import embed_texts, profiles_job
from models.profiles.http_backend import ServerEncoder
from storage.errors import DynllmError
from storage.importer import run_import
from storage.presets import preset_spec
from storage.profiles import load_embeddings, save_embeddings
from storage.workspace import Workspace
from tests.conftest import workspace_fingerprint, write_head
from tests.profiles.llama_server import LlamaServer

pytestmark = pytest.mark.slow

ROWS = 12  # the first real lines: a dozen items, each embedded in its own request


@pytest.fixture(scope="module")
def embed_server(tmp_path_factory):
    srv = LlamaServer(tmp_path_factory.mktemp("embed"), alias="smollm2-embed", embedding=True)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def tiny(tmp_path, online_retail_path):
    data = write_head(online_retail_path, tmp_path / "head.csv", ROWS)
    db = tmp_path / "ws.db"
    with Workspace.open(db) as ws:
        run_import(ws, preset_spec("online-retail", data))
    return db


def test_server_vectors_are_stored_once_and_match_a_direct_request(embed_server, tiny):
    encoder = ServerEncoder(embed_server.url)
    assert encoder.dim == 576 and encoder.name == "smollm2-embed/server-l2"
    # llama_cpp.server answers wrong vectors for all but the first text of a batch on this
    # model; the probe sees it and the encoder sends one text per request.
    assert not encoder.batches and encoder.batch_size == 1
    with Workspace.open(tiny, create=False) as ws:
        counts = embed_texts(ws, encoder=encoder)
        n_items = ws.conn.execute("SELECT count(*) FROM items").fetchone()[0]
        assert counts == {"item": n_items}
        keys, matrix = load_embeddings(ws, "item", encoder.name)
        assert matrix.shape == (n_items, 576)
        assert np.allclose(np.linalg.norm(matrix, axis=1), 1.0, atol=1e-5)
        title = ws.conn.execute("SELECT text FROM items WHERE id = ?", (int(keys[0]),)
                                ).fetchone()[0]
        assert np.allclose(matrix[0], encoder.encode([title])[0], atol=1e-5)
        assert embed_texts(ws, encoder=encoder) == {}  # unchanged texts are not sent again
    encoder.close()


def test_vectors_of_another_size_are_refused_with_the_way_to_re_embed(embed_server, tiny):
    # The state a workspace profiled with the packaged encoder is in: 384-d vectors stored.
    with Workspace.open(tiny, create=False) as ws:
        item = ws.conn.execute("SELECT id FROM items ORDER BY id LIMIT 1").fetchone()[0]
        save_embeddings(ws, "item", "all-MiniLM-L6-v2/mean-l2",
                        [(str(item), "0" * 16, np.full(384, 384 ** -0.5, np.float32))])
    before = workspace_fingerprint(tiny)
    with pytest.raises(DynllmError) as failure:
        profiles_job(tiny, encoder=embed_server.url)
    line = str(failure.value)
    assert "\n" not in line
    assert "1 of 384 dimensions from all-MiniLM-L6-v2/mean-l2" in line
    assert f"({embed_server.url} gives 576 dimensions" not in line  # the model, not the URL
    assert "576 dimensions from smollm2-embed/server-l2" in line
    assert line.endswith(f"dynllm-tui profiles --encoder {embed_server.url} --re-embed")
    assert workspace_fingerprint(tiny) == before


def test_an_encoder_model_the_server_does_not_serve(embed_server, tiny):
    from dynllm_tui.jobs.profiles import ServerSettings

    with pytest.raises(DynllmError, match=r"does not serve model 'bge-m3'; it serves: "
                       r"smollm2-embed \(choose one with --encoder-model\)"):
        profiles_job(tiny, encoder=embed_server.url,
                     server=ServerSettings(encoder_model="bge-m3"))


def test_re_embed_replaces_the_other_vectors_and_training_reads_the_server_ones(embed_server,
                                                                                 tiny):
    from dynllm_tui.jobs.profiles import stored_encoder_name

    with Workspace.open(tiny, create=False) as ws:
        n_items = ws.conn.execute("SELECT count(*) FROM items").fetchone()[0]
        item = ws.conn.execute("SELECT id FROM items ORDER BY id LIMIT 1").fetchone()[0]
        save_embeddings(ws, "item", "all-MiniLM-L6-v2/mean-l2",
                        [(str(item), "0" * 16, np.full(384, 384 ** -0.5, np.float32))])
        # A customer with fewer lines than a first snapshot needs: no profile, only vectors.
        quiet = ws.conn.execute(
            "SELECT u.external_id FROM interactions x JOIN users u ON u.id = x.user_id "
            "GROUP BY x.user_id ORDER BY count(*), u.external_id LIMIT 1").fetchone()[0]
    summary = profiles_job(tiny, users=[quiet], encoder=embed_server.url, re_embed=True)
    assert summary.planned == 0 and summary.embedded == {"item": n_items}
    with Workspace.open(tiny, create=False) as ws:
        assert ws.conn.execute("SELECT DISTINCT model, dim FROM embeddings").fetchall() == [
            ("smollm2-embed/server-l2", 576)]
        assert stored_encoder_name(ws) == "smollm2-embed/server-l2"
