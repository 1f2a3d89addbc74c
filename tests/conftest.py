"""Shared pytest configuration: the fake hub fixtures from unihub.testing."""

pytest_plugins = ["unihub.testing.fixtures"]
