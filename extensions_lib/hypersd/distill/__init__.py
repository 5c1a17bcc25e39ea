"""TSCD distillation engine (diffusers + peft + accelerate, imported lazily by the submodules that need them).

Public entry points:

* :func:`hypersd.distill.engine.run_distillation` (``DistillConfig`` → stage LoRAs + final LoRA)
* :func:`hypersd.distill.cli.main` (``python -m hypersd distill``)
* :func:`hypersd.distill.lora.webui_module_name`, :func:`hypersd.distill.lora.diffusers_to_ldm_module`
* :func:`hypersd.lora_metadata.lora_metadata`
"""
