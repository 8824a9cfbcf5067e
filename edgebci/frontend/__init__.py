"""Front-end stage: causal Bessel IIR filters as second-order sections, designed in float (scipy),
run on the device in fixed point (Q31 biquads), with the checks that refuse what cannot run faithfully."""
from edgebci.frontend.analysis import FrontEndAnalysis, analyze_frontend, check_frontend
from edgebci.frontend.bessel import FrontEnd, apply_frontend, design_bessel
from edgebci.frontend.fixed import (FilterState, FixedFrontEnd, apply_fixed_frontend, filter_fixed,
                                    quantize_frontend, to_microvolts)

__all__ = ["FrontEnd", "apply_frontend", "design_bessel", "FrontEndAnalysis", "analyze_frontend", "check_frontend",
           "FilterState", "FixedFrontEnd", "apply_fixed_frontend", "filter_fixed", "quantize_frontend",
           "to_microvolts"]
