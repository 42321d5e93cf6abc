"""help screen area."""
