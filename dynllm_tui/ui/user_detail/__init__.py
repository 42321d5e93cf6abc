"""user detail screen area."""
