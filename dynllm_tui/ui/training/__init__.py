"""training screen area."""
