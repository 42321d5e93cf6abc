"""The packaged sentence encoder: shape, determinism, meaning, batching."""

from __future__ import annotations

import numpy as np

from models.profiles.text_encoder import TextEncoder, packaged_encoder_dir

TEXTS = ["white hanging heart t-light holder", "heart shaped candle holder",
         "jumbo bag red retrospot", "Christmas decorations and gift wrap", "",
         "ünïcödé 🎉 \"quoted\" text\x00 with control", "long " * 400]


def test_shape_dtype_and_unit_length(encoder):
    v = encoder.encode(TEXTS)
    assert v.shape == (len(TEXTS), 384) and v.dtype == np.float32
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert encoder.encode([]).shape == (0, 384)


def test_identical_texts_identical_vectors(encoder):
    v = encoder.encode(["retro kitchen", "retro kitchen", "vintage tableware"])
    assert np.array_equal(v[0], v[1])


def test_similar_texts_are_closer_than_unrelated(encoder):
    a, b, c = encoder.encode(["tea room owner who bakes cakes", "cafe selling cakes and tea",
                              "garden tools and watering cans"])
    assert a @ b > a @ c + 0.1


def test_batching_does_not_change_vectors(encoder):
    batched = encoder.encode(TEXTS)
    one_by_one = np.vstack([encoder.encode([t]) for t in TEXTS])
    assert np.abs(batched - one_by_one).max() < 1e-5


def test_name_and_unnormalised_variant():
    raw = TextEncoder(normalize=False, batch_size=2)
    assert raw.name == "all-MiniLM-L6-v2/mean" and TextEncoder().name == "all-MiniLM-L6-v2/mean-l2"
    v = raw.encode(TEXTS[:3])
    assert v.shape == (3, 384) and not np.allclose(np.linalg.norm(v, axis=1), 1.0)
    assert (packaged_encoder_dir() / "model.safetensors").is_file()
