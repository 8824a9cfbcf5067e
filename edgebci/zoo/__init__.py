"""Model zoo: decoder architectures and self-describing checkpoints."""
from edgebci.zoo.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from edgebci.zoo.registry import ARCHITECTURES, build_model

__all__ = ["ARCHITECTURES", "Checkpoint", "build_model", "load_checkpoint", "save_checkpoint"]
