"""Training: a placeholder until the training job lands. It will show `train`'s parameters as a
form, start `train_job` in a thread worker with a live progress bar, loss and validation plots,
and a cancel key; the finished run then appears in Runs."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from textual.containers import VerticalScroll
from textual.widgets import Static

from dynllm_tui.ui.common.base_screen import WorkbenchScreen
from dynllm_tui.ui.keys import bindings

TEXT = """\
[b]Training arrives with the model.[/b]

This screen will hold the parameters of [b]dynllm-tui train[/b] as a form, start training in \
the background with a live progress bar, loss and validation-metric plots, and cancel it; \
the rest of the app stays usable meanwhile, and the finished run appears under Runs.

Until then, train from a shell (the app picks the run up on refresh, [b]{refresh}[/b]):

  dynllm-tui profiles                      make the LLM profiles first
  dynllm-tui train --epochs 20             train DynLLM (--device cuda: on a GPU)
  dynllm-tui train --ablation no_profiles  an ablation, compared under Runs
"""


class TrainingScreen(WorkbenchScreen):
    SCOPE = "training"
    SECTION = "training"
    BINDINGS = bindings("training")
    DEFAULT_CSS = """
    TrainingScreen #training-text { padding: 1 2; }
    """

    def compose_body(self) -> Iterable[Any]:
        with VerticalScroll():
            yield Static(id="training-text")

    def on_mount(self) -> None:
        self.query_one("#training-text", Static).update(
            TEXT.format(refresh=self.workbench.key_display("refresh")))
