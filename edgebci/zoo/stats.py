"""Size and cost of a decoder: parameters and multiply-accumulates per window."""
from __future__ import annotations


def decoder_stats(ckpt) -> dict:
    """params : trainable parameters; macs : multiply-accumulates of convolutions and matrix products
    for one window, as the device runs it (the family's export form); element-wise ops not counted."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from dataclasses import replace

    import numpy as np

    from edgebci.compile.sources import checkpoint_module
    if not ckpt.calibrated:   # the same cost for any user: count with an identity alignment
        ckpt = replace(ckpt, align_matrix=np.eye(len(ckpt.channels), dtype=np.float32))
    model = checkpoint_module(ckpt)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.zeros(1, len(ckpt.channels), ckpt.window_samples))
    params = sum(p.numel() for p in ckpt.build_model().parameters())
    return {"params": int(params), "macs": int(counter.get_total_flops() // 2)}
