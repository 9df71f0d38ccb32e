"""Training: Model and Sequential, the step engine, callbacks, summaries and model files."""
