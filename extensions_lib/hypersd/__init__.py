"""sd-webui-hyper-sd: few-step generation with Hyper-SD, and TSCD distillation of a house model.

The package is the pure core: it imports torch, numpy and safetensors only (the training
engine ``hypersd.distill`` also imports diffusers, peft and accelerate, lazily).  It never
imports WebUI's ``modules`` nor gradio; that is the job of ``hypersd.webui``.
"""

__version__ = "0.1.0"
