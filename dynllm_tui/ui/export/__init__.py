"""export screen area."""
