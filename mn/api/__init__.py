"""The API layer: catalogue (wire shapes), registry (handlers), dispatch and both transports."""
