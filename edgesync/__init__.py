"""EdgeSync shared core: config, sampling, drift, weights codec, wire conversion, metrics."""

__version__ = "0.1.0"
