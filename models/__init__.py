"""Machine learning for DynLLM: no SQLite, no Textual, no `storage` or `dynllm_tui` imports.

One sub-package per subsystem; tests/test_architecture.py enforces who may import whom:

- `vocabulary`   facet names and ablation names (torch-free; anyone may import it);
- `data`         the shared data layer: event log, split, batches, neighbour finder, snapshot
                 timing, profile index. Imports only `vocabulary`;
- `profiles`     the LLM half: backend, GGUF files, prompt, output parsing, profiler, text
                 encoder, category taxonomy. Imports `data` and `vocabulary`, never the network;
- `network`      the graph half: DynLLM, facet attention, temporal attention, memory, time
                 encoding. Imports `data` and `vocabulary`, never `profiles`;
- `training`     the batch stream shared by training, evaluation and replay; the training loop;
                 replay. Imports `network`, `data` and `evaluation.metrics`;
- `evaluation`   metrics, protocols and baselines (never the network) and the model report
                 (which trains DynLLM, so it alone may import `training` and `network`).

Package `__init__` files re-export nothing, so importing a torch-free module stays cheap.
See docs/ARCHITECTURE.md.
"""
