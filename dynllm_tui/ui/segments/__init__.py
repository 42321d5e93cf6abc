"""Segments screen area."""
