"""Contrastive data construction: recipes, entity sources, generation backends and pair building.

See `latentrm.data.build` for the stage and `latentrm data --help` for the CLI.
"""
