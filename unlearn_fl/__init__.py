"""unlearn-fl: verified machine unlearning for Flower federated learning.

The math (information/, feature/, methods/, audit/, accounting/) imports neither
Flower nor MLflow; engine/ bridges to Flower and tracking.py to MLflow.
"""

__version__ = "0.1.0"
