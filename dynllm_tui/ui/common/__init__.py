"""Components shared by several screens."""
