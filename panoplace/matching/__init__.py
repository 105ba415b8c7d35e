"""Matching queries to the map: ``retrieval`` (top-k + confidence), ``rotation`` (circular
crop alignment and heading) and ``sequence`` (SeqSLAM-style sequence matching).

Import the submodules directly; nothing heavy is imported here.
"""
