"""NumPy models with per-example gradients: logistic regression, MLP.

May import: numpy/scipy only.
"""
