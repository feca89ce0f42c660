"""SigLIP (transformers) <-> nanoseek's vision and text towers, and real weights into our VLM. (Chapter 12.)

`nanoseek.nn.vision` names its modules as transformers' `SiglipVisionModel` and `SiglipTextModel` do, so the
state dicts match key for key (``embeddings.patch_embedding``, ``encoder.layers.{i}.self_attn.q_proj``,
``post_layernorm``, ``head.probe``, ...). The conversion is a config translation and a strict load:
`load_state_strict` fails, naming them, on missing keys, unexpected keys and shape mismatches (a loader that
silently skips weights trains a model that has loaded nothing).

`load_vlm()` builds the chapter's VLM from real checkpoints on a GPU (google/siglip-base-patch16-224 +
Qwen/Qwen2.5-0.5B-Instruct); the tests run it on tiny random models of the same transformers classes saved
to a folder.
"""
from __future__ import annotations

import torch

from nanoseek.models.vlm import VLM, VLMConfig, load_state_strict
from nanoseek.nn.vision import TextConfig, TextTower, VisionConfig, VisionTower

_ACT = "gelu_pytorch_tanh"


def vision_config_from_hf(hf_config, use_head: bool | None = None) -> VisionConfig:
    """Our VisionConfig of a transformers SiglipVisionConfig."""
    if getattr(hf_config, "hidden_act", _ACT) != _ACT:
        raise ValueError(f"only hidden_act={_ACT!r} is supported, got hidden_act={hf_config.hidden_act!r}")
    return VisionConfig(
        image_size=hf_config.image_size, patch_size=hf_config.patch_size, num_channels=hf_config.num_channels,
        hidden_size=hf_config.hidden_size, intermediate_size=hf_config.intermediate_size,
        num_hidden_layers=hf_config.num_hidden_layers, num_attention_heads=hf_config.num_attention_heads,
        layer_norm_eps=hf_config.layer_norm_eps,
        use_head=bool(getattr(hf_config, "vision_use_head", True)) if use_head is None else use_head)


def vision_config_to_hf(cfg: VisionConfig):
    from transformers import SiglipVisionConfig

    return SiglipVisionConfig(
        image_size=cfg.image_size, patch_size=cfg.patch_size, num_channels=cfg.num_channels,
        hidden_size=cfg.hidden_size, intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_hidden_layers, num_attention_heads=cfg.num_attention_heads,
        layer_norm_eps=cfg.layer_norm_eps, hidden_act=_ACT, vision_use_head=cfg.use_head)


def text_config_from_hf(hf_config) -> TextConfig:
    if getattr(hf_config, "hidden_act", _ACT) != _ACT:
        raise ValueError(f"only hidden_act={_ACT!r} is supported, got hidden_act={hf_config.hidden_act!r}")
    return TextConfig(
        vocab_size=hf_config.vocab_size, max_position_embeddings=hf_config.max_position_embeddings,
        hidden_size=hf_config.hidden_size, intermediate_size=hf_config.intermediate_size,
        num_hidden_layers=hf_config.num_hidden_layers, num_attention_heads=hf_config.num_attention_heads,
        layer_norm_eps=hf_config.layer_norm_eps,
        projection_size=getattr(hf_config, "projection_size", None) or hf_config.hidden_size)


def text_config_to_hf(cfg: TextConfig):
    from transformers import SiglipTextConfig

    return SiglipTextConfig(
        vocab_size=cfg.vocab_size, max_position_embeddings=cfg.max_position_embeddings,
        hidden_size=cfg.hidden_size, intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_hidden_layers, num_attention_heads=cfg.num_attention_heads,
        layer_norm_eps=cfg.layer_norm_eps, hidden_act=_ACT, projection_size=cfg.projection_size,
        pad_token_id=0, bos_token_id=None, eos_token_id=None)


def _hf_state(hf_model) -> dict[str, torch.Tensor]:
    prefix = "vision_model." if any(k.startswith("vision_model.") for k in hf_model.state_dict()) else ""
    return {k[len(prefix):]: v.detach().clone() for k, v in hf_model.state_dict().items()
            if not k.endswith("position_ids")}


def vision_from_hf(hf_model, use_head: bool | None = None) -> VisionTower:
    """Our VisionTower with the weights of a transformers SiglipVisionModel (use_head=False drops its head)."""
    cfg = vision_config_from_hf(hf_model.config, use_head)
    tower = VisionTower(cfg)
    state = _hf_state(hf_model)
    if not cfg.use_head:
        state = {k: v for k, v in state.items() if not k.startswith("head.")}
    load_state_strict(tower, state, "SigLIP vision")
    p = next(hf_model.parameters())
    return tower.to(device=p.device, dtype=p.dtype)


def vision_to_hf(tower: VisionTower):
    """A transformers SiglipVisionModel with the weights of our VisionTower."""
    from transformers import SiglipVisionModel

    hf = SiglipVisionModel(vision_config_to_hf(tower.config))
    load_state_strict(hf, {**tower.state_dict(), **{k: v for k, v in hf.state_dict().items()
                                                    if k.endswith("position_ids")}}, "SigLIP vision (transformers)")
    return hf.eval()


def text_from_hf(hf_model) -> TextTower:
    tower = TextTower(text_config_from_hf(hf_model.config))
    load_state_strict(tower, _hf_state(hf_model), "SigLIP text")
    return tower


def text_to_hf(tower: TextTower):
    from transformers import SiglipTextModel

    hf = SiglipTextModel(text_config_to_hf(tower.config))
    load_state_strict(hf, {**tower.state_dict(), **{k: v for k, v in hf.state_dict().items()
                                                    if k.endswith("position_ids")}}, "SigLIP text (transformers)")
    return hf.eval()


def load_vlm(vision_name: str = "google/siglip-base-patch16-224", lm_name: str = "Qwen/Qwen2.5-0.5B-Instruct",
             *, projector: str = "mlp", pixel_shuffle: int = 2, image_token: str = "<|image_pad|>",
             max_seq_len: int = 4096, device: torch.device | str | None = None, dtype: torch.dtype | None = None,
             with_processors: bool = False):
    """Our VLM with real SigLIP vision weights and a real Qwen2 decoder; the projector is new (train it: stage 1).

    On a Colab GPU: ``vlm, (proc, tok) = load_vlm(device="cuda", dtype=torch.bfloat16, with_processors=True)``
    (about 1.4 GB the first time). SigLIP-base sees 224² pixels as 14×14 patches; ``pixel_shuffle=2`` gives
    49 image tokens of 4·768 features for the projector. Both checkpoints load with ``use_safetensors=True``;
    any missing or unexpected key is an error. ``image_token`` names the placeholder in the LM's tokenizer
    (Qwen2.5 has ``<|image_pad|>``); names can also be local ``save_pretrained`` folders.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer, SiglipVisionModel

    from nanoseek.env import device as best_device
    from nanoseek.interop import qwen2

    dtype = dtype or torch.float32
    hf_vision = SiglipVisionModel.from_pretrained(vision_name, dtype=dtype, use_safetensors=True)
    hf_lm = AutoModelForCausalLM.from_pretrained(lm_name, dtype=dtype, use_safetensors=True,
                                                 attn_implementation="eager")
    tok = AutoTokenizer.from_pretrained(lm_name)
    image_token_id = tok.convert_tokens_to_ids(image_token)
    if image_token_id is None or image_token_id == tok.unk_token_id:
        raise ValueError(f"image_token={image_token!r} is not a token of {lm_name!r}")
    tower = vision_from_hf(hf_vision, use_head=False)
    lm = qwen2.from_hf(hf_lm, max_seq_len=max_seq_len)
    cfg = VLMConfig(vision=tower.config, decoder=lm.config, image_token_id=int(image_token_id),
                    pixel_shuffle=pixel_shuffle, projector=projector)
    with torch.device("meta"):
        vlm = VLM(cfg)
    vlm.vision, vlm.lm = tower, lm
    vlm.projector = type(vlm.projector)(projector, tower.config.hidden_size * pixel_shuffle ** 2, lm.config.n_embd)
    vlm = vlm.to(device=device or best_device(), dtype=dtype).eval()
    del hf_vision, hf_lm
    if not with_processors:
        return vlm
    from transformers import AutoImageProcessor

    return vlm, (AutoImageProcessor.from_pretrained(vision_name), tok)
