"""Workflows that chain stages, above them all: the grid then its blend (grid.py), a blend then its
distilled student (distill.py). A stage never calls the one after it; these do."""
