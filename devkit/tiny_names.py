"""The names of the tiny test files (tiny_models.py writes them), importable without torch. The
stock loaders' files carry the shipped workflow's names, so the workflow runs with only the test
loaders swapped in."""
UNET = "wan2.1_i2v_480p_14B_fp16.safetensors"
VAE = "wan_2.1_vae.safetensors"
TEXT_ENCODER = "umt5_xxl_fp8_e4m3fn_scaled.safetensors"
CLIP_VISION = "clip_vision_h.safetensors"
RELEASED = "Video-As-Prompt-Wan2.1-14B"
EXPERT = f"{RELEASED}/transformer/diffusion_pytorch_model.safetensors.index.json"
START_IMAGE = "vap_tiny_start.png"
REFERENCE = "vap_tiny_reference.mp4"
SHORT_REFERENCE = "vap_tiny_short.mp4"
GIF_REFERENCE = "vap_tiny_reference.gif"
NOT_A_VIDEO = "vap_not_a_video.mp4"
T2V_UNET = "wan2.1_t2v_tiny.safetensors"  # a wrong backbone: text-to-video
NOT_AN_EXPERT = "not_an_expert.safetensors"  # a Wan diffusion model placed in models/vap
WIDE_UNET = "wan2.1_i2v_wider_tiny.safetensors"  # Wan 2.1 I2V of another width (like 1.3B vs 14B)
RETRAINED_UNET = "wan2.1_i2v_other_weights_tiny.safetensors"  # same sizes, other weights (a fine-tune)
LORA = "vap_tiny_lora.safetensors"
# experts trained beside a backbone that differs from the tiny one in a size only the expert file tells
OTHER_TEXT_WIDTH_EXPERT = "vap_expert_text512_tiny.safetensors"
OTHER_PATCH_EXPERT = "vap_expert_patch144_tiny.safetensors"  # a LoRA on the first (expert) layer's self-attention q
SIZE = 64
# CogVideoX-I2V-5B (ComfyUI 0.33 and later): the shipped template's names; the tiny backbone runs at SIZE x SIZE, 9 frames
COG_RELEASED = "Video-As-Prompt-CogVideoX-5B"
COG_CHECKPOINT = f"{COG_RELEASED}/transformer/diffusion_pytorch_model.safetensors.index.json"
COG_UNET = "cogvideox_5b_i2v_tiny.safetensors"  # the same backbone, for the stock UNETLoader
COG_VAE = "cogvideox_5b_i2v_vae.safetensors"  # random, real size (the stock VAELoader builds only that)
COG_TEXT_ENCODER = "t5xxl_fp16.safetensors"
COG_LENGTH = 9
