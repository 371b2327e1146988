"""Fine-tuning recipes and launcher for the GLM-4.5 family (GLM-4.5, GLM-4.5-Air)."""

__version__ = "0.1.0"
