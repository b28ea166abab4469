"""reproduce package."""
