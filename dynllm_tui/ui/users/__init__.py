"""users screen area."""
