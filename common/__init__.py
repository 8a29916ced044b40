"""Shared plumbing: typed config loading, Ray start-up, logging."""
