"""Ensembles of zoo models: averaging members in one graph, snapshots, evaluation, export."""
