"""search/types package."""
