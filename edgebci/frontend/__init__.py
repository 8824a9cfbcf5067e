"""Front-end stage: causal Bessel IIR filters as second-order sections, applied exactly as on the device."""
from edgebci.frontend.bessel import FrontEnd, apply_frontend, design_bessel

__all__ = ["FrontEnd", "apply_frontend", "design_bessel"]
