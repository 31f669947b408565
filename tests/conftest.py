"""Shared fixtures: each lives in tests/fixtures/ beside the resource it starts."""

pytest_plugins = [
    "tests.fixtures.chromium",
    "tests.fixtures.postgres",
    "tests.fixtures.prometheus",
    "tests.fixtures.redis",
    "tests.fixtures.s3",
    "tests.fixtures.service",
]
