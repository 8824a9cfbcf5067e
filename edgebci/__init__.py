"""edgebci: trained EEG decoders compiled for microcontrollers and validated hardware-in-the-loop.

The pipeline, one stage per module:
    data -> frontend -> zoo/train -> compile -> firmware -> hil -> report
"""
__version__ = "0.1.0"
