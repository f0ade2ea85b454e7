"""Numerical checks of the tracker bounds and allocation studies on synthetic dynamics."""
