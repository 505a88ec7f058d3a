"""interactions package."""
