"""pytest fixtures for the real components the tests run against."""
