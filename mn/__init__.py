"""ZStack-design management node: API, resource model, flows and jobs."""

__version__ = "0.1.0"
