"""EdgeSync cloud process: ingest, teacher labelling, training manager, workers, registry and API."""
