"""Allocators: choose where a resource goes and reserve its capacity in the same transaction."""
