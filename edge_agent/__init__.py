"""The edge process: capture -> detect -> sample -> upload; model updates -> hot swap."""
