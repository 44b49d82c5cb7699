"""Video-As-Prompt (arXiv 2510.20888) for Wan 2.1 I2V in plain PyTorch. No ComfyUI import here."""
from .config import WanConfig
from .errors import (CheckpointMismatchError, CorruptCheckpointError, IncompatibleExpertError, InputError,
                     MissingShardError, NotACheckpointError, VAPError)
from .expert import VAPExpert, load_expert_file
from .backbone import WanI2V, load_wan_file
from .model import VAPTransformer

__all__ = ["WanConfig", "VAPExpert", "WanI2V", "VAPTransformer", "load_expert_file", "load_wan_file",
           "VAPError", "NotACheckpointError", "MissingShardError", "CorruptCheckpointError",
           "CheckpointMismatchError", "IncompatibleExpertError", "InputError"]
