"""home screen area."""
