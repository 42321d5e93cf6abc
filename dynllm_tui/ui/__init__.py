"""The Textual screens of the workbench, one component per module, grouped by screen area.

Screens never run SQL or torch: they call `storage.browse` (through `reader.WorkspaceReader`)
and the jobs in `dynllm_tui.jobs`, always from thread workers.
"""
