"""Jobs: plain functions that wire `storage` and `models`, one module per job.

Each job takes a progress callback and a cancel flag, commits as it goes and never prints: the
CLI drives it with a progress bar, the app runs it in a worker (training and the demo in a child
process, `child_process`). Nothing here imports Textual. Modules:

- `control`: the progress and cancel conventions every job shares;
- `imports`, `profiles`, `taxonomy`, `training`, `evaluation`, `recommend`, `export`,
  `segments`, `status`, `replay`, `activate`, `demo`, `check`: the jobs;
- `train_settings`: the range of every numeric training setting (CLI, form, job);
- `workspace_data`: the workspace read once as the model sees it (training, evaluation, replay);
- `child_process`: a CLI job run as a child process, its JSON-lines progress read back;
- `training_lock`: one training per workspace, visible to every process.

See docs/ARCHITECTURE.md.
"""
