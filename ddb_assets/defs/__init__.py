"""Dagster definitions: thin wrappers over exports/, lake/ and query/, built per configured table."""
