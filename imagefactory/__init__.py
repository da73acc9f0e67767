"""imagefactory: PyTorch container images for AMD RDNA1 GPUs, rendered, built, tested, published."""

__version__ = "0.1.0"
