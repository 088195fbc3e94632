"""zipper: compose pretrained unimodal decoders into a multimodal generator with gated cross-attention."""
from zipper.config import ConfigError, ZipperConfig
from zipper.model import CheckpointError, Segment, ZipperModel, ZipperOutput

__all__ = ["CheckpointError", "ConfigError", "Segment", "ZipperConfig", "ZipperModel", "ZipperOutput"]
__version__ = "0.1.0"
