"""runs screen area."""
