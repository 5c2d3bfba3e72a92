"""projections layer: DuckDB read models, written per finalized block and queried by the API."""

from projections.projector import Projector
from projections.read_models import ReadModels

__all__ = ["Projector", "ReadModels"]
