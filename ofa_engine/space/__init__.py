"""The family-agnostic search-space interface and the categorical genome (layer 1)."""
