from .version_fixtures import tiny_versions  # noqa: F401  (session fixture)
