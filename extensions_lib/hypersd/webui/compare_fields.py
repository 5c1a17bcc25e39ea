"""The txt2img/img2img components the accordion reads (by elem_id suffix), shared by the script and Compare."""

MAIN_FIELDS = ("prompt", "neg_prompt", "seed", "width", "height", "steps", "sampling", "scheduler", "cfg_scale")
