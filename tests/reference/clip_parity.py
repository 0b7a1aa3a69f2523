"""Reference fixture for tests/clipnet/clip_model_test.cpp: small random CLIP models built with the three
reference packages (openai-clip, open_clip_torch, transformers), saved in every weight format clipnet loads,
with the reference outputs the C++ ClipModel must reproduce.

For each case, DIR/<case>/expected.safetensors holds the inputs (image (B=2,3,H,W) normalised, tokens (B=3,L)
int64) and outputs: image_emb (2,E), text_emb (3,E), logits_per_image (2,3), and grad (2,3,H,W) =
d sum_b cosine(image_emb[b], text_emb[0]) / d image. DIR/cases.json lists the cases: the weight path to hand
to load_clip, an optional config JSON path, and the expected file. DIR/DONE is written last.

Usage: python clip_parity.py --out DIR [--test-data DIR]
"""
import json
import os
import shutil
import tempfile

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

import clip.model as oai
import open_clip
import transformers
import fixture_cli  # tests/reference/fixture_cli.py, beside this script

B_IMAGE, B_TEXT = 2, 3
SOT, EOT = 49406, 49407


def randomize(model, seed):
    """Moves every weight away from its initial value so each one matters (OpenAI zero-inits bn3, LayerNorms
    start at 1/0, BatchNorm running stats at 0/1)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g)
            leaf = name.split(".")[-2] if "." in name else name
            is_norm = any(s in leaf for s in ("ln", "bn", "norm")) or ".downsample.1." in name
            if is_norm and name.endswith("weight"):
                p.copy_(1.0 + 0.1 * noise)
            elif name.endswith("bias"):
                p.copy_(0.1 * noise)
            elif name.endswith("logit_scale"):
                p.fill_(2.5)
            else:
                p.add_(0.02 * noise)
        for name, b in model.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(0.1 * torch.randn(b.shape, generator=g))
            elif name.endswith("running_var"):
                b.copy_(0.5 + torch.rand(b.shape, generator=g))


def make_inputs(image_size, context_length, seed):
    g = torch.Generator().manual_seed(seed)
    image = torch.randn(B_IMAGE, 3, image_size, image_size, generator=g)
    tokens = torch.zeros(B_TEXT, context_length, dtype=torch.long)
    for i, n in enumerate([5, 11, context_length - 2]):  # the last row fills the context
        tokens[i, 0] = SOT
        tokens[i, 1:n + 1] = torch.randint(1, 49405, (n,), generator=g)
        tokens[i, n + 1] = EOT
    return image, tokens


def reference_outputs(encode_image, encode_text, logits_fn, image, tokens):
    """Embeddings, logits and d sum_b cos(image_emb[b], text_emb[0]) / d image, in fp32."""
    image = image.clone().requires_grad_(True)
    image_emb = encode_image(image)
    text_emb = encode_text(tokens)
    loss = F.cosine_similarity(image_emb, text_emb[0:1].expand_as(image_emb), dim=-1).sum()
    (grad,) = torch.autograd.grad(loss, image)
    with torch.no_grad():
        logits = logits_fn(image.detach(), tokens)
    return {
        "image": image.detach().contiguous(),
        "tokens": tokens.contiguous(),
        "image_emb": image_emb.detach().contiguous(),
        "text_emb": text_emb.detach().contiguous(),
        "logits_per_image": logits.detach().contiguous(),
        "grad": grad.contiguous(),
    }


def save_expected(out_dir, case, outputs):
    os.makedirs(os.path.join(out_dir, case), exist_ok=True)
    path = os.path.join(case, "expected.safetensors")
    save_file({k: v.detach().cpu().contiguous() for k, v in outputs.items()}, os.path.join(out_dir, path))
    return path


# --- openai-clip --------------------------------------------------------------------------------------------
def openai_cases(out_dir, cases):
    # ViT: width 128 -> 2 heads, grid 4; RN: width 32 -> attnpool 1024 wide with 16 heads (OpenAI's rule), S=2.
    specs = {
        "openai_vit": dict(embed_dim=64, image_resolution=32, vision_layers=2, vision_width=128, vision_patch_size=8),
        "openai_rn": dict(embed_dim=64, image_resolution=64, vision_layers=(1, 1, 1, 1), vision_width=32,
                          vision_patch_size=None),
    }
    for seed, (name, spec) in enumerate(specs.items()):
        torch.manual_seed(100 + seed)
        model = oai.CLIP(**spec, context_length=77, vocab_size=49408, transformer_width=128, transformer_heads=2,
                         transformer_layers=2)
        randomize(model, 200 + seed)
        model.eval()
        image, tokens = make_inputs(spec["image_resolution"], 77, 300 + seed)

        def run(m):
            return reference_outputs(m.encode_image, m.encode_text, lambda i, t: m(i, t)[0], image, tokens)

        # fp32 state dict, as torch.save writes it (a torch zip file).
        state_path = os.path.join(name + "_state", "model.pt")
        os.makedirs(os.path.join(out_dir, name + "_state"), exist_ok=True)
        torch.save(model.state_dict(), os.path.join(out_dir, state_path))
        cases.append({"name": name + "_state", "weights": state_path, "config": None, "dtype": "float32",
                      "expected": save_expected(out_dir, name + "_state", run(model))})

        # OpenAI's released files: the fp16-converted model traced and saved as TorchScript.
        oai.convert_weights(model)
        with torch.no_grad():
            traced = torch.jit.trace(model, (image.half(), tokens), check_trace=False)
        jit_path = os.path.join(name + "_jit", "model.pt")
        os.makedirs(os.path.join(out_dir, name + "_jit"), exist_ok=True)
        torch.jit.save(traced, os.path.join(out_dir, jit_path))
        model.float()  # the fp16-rounded weights, computed in fp32
        cases.append({"name": name + "_jit", "weights": jit_path, "config": None, "dtype": "float16",
                      "expected": save_expected(out_dir, name + "_jit", run(model))})


# --- open_clip ----------------------------------------------------------------------------------------------
def open_clip_cases(out_dir, cases):
    configs = {
        # GELU, head width 32 (4 heads of 128), MLP ratio 2: only a config can say so.
        "openclip_vit_gelu": {
            "embed_dim": 48, "quick_gelu": False,
            "vision_cfg": {"image_size": 48, "layers": 2, "width": 128, "patch_size": 16, "head_width": 32,
                           "mlp_ratio": 2.0},
            "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 96, "heads": 3, "layers": 2},
        },
        "openclip_rn_quickgelu": {
            "embed_dim": 64, "quick_gelu": True,
            "vision_cfg": {"image_size": 64, "layers": [1, 2, 1, 1], "width": 32, "patch_size": None},
            "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 128, "heads": 2, "layers": 2},
        },
    }
    cfg_dir = tempfile.mkdtemp(prefix="clip_parity_cfg")
    try:
        for seed, (name, cfg) in enumerate(configs.items()):
            cfg_name = "clipguide-parity-" + name
            with open(os.path.join(cfg_dir, cfg_name + ".json"), "w") as f:
                json.dump(cfg, f)
            open_clip.add_model_config(os.path.join(cfg_dir, cfg_name + ".json"))
            torch.manual_seed(400 + seed)
            model = open_clip.create_model(cfg_name)
            randomize(model, 500 + seed)
            model.eval()
            image, tokens = make_inputs(cfg["vision_cfg"]["image_size"], cfg["text_cfg"]["context_length"], 600 + seed)
            outputs = reference_outputs(model.encode_image, model.encode_text,
                                        lambda i, t: model.get_logits(i, t)[0], image, tokens)
            case_dir = os.path.join(out_dir, name)
            os.makedirs(case_dir, exist_ok=True)
            expected = save_expected(out_dir, name, outputs)
            config_path = os.path.join(name, "model_config.json")
            with open(os.path.join(out_dir, config_path), "w") as f:
                json.dump(cfg, f, indent=2)
            state = {k: v for k, v in model.state_dict().items()}
            # open_clip's trainer: {"epoch", "name", "state_dict": {"module." + k}, "optimizer"} via torch.save.
            ckpt_path = os.path.join(name, "epoch_3.pt")
            torch.save({"epoch": 3, "name": name, "state_dict": {"module." + k: v for k, v in state.items()}},
                       os.path.join(out_dir, ckpt_path))
            cases.append({"name": name + "_trainer_ckpt", "weights": ckpt_path, "config": config_path,
                          "dtype": "float32", "expected": expected})
            st_path = os.path.join(name, "open_clip_model.safetensors")
            save_file({k: v.contiguous() for k, v in state.items()}, os.path.join(out_dir, st_path))
            cases.append({"name": name + "_safetensors", "weights": st_path, "config": config_path,
                          "dtype": "float32", "expected": expected})
            # A Hugging Face hub open_clip repo: open_clip_config.json {"model_cfg", "preprocess_cfg"} + weights.
            hub_dir = os.path.join(name, "hub")
            os.makedirs(os.path.join(out_dir, hub_dir), exist_ok=True)
            with open(os.path.join(out_dir, hub_dir, "open_clip_config.json"), "w") as f:
                json.dump({"model_cfg": cfg, "preprocess_cfg": {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}}, f)
            os.link(os.path.join(out_dir, st_path), os.path.join(out_dir, hub_dir, "open_clip_model.safetensors"))
            cases.append({"name": name + "_hub_folder", "weights": hub_dir, "config": None, "dtype": "float32",
                          "expected": expected})
            if not isinstance(cfg["vision_cfg"]["layers"], list):
                # The same weights run at another resolution: open_clip resizes the positions when loading.
                side = 64
                big = open_clip.create_model(cfg_name, force_image_size=side)
                resized = dict(state)
                open_clip.model.resize_pos_embed(resized, big)
                big.load_state_dict(resized)
                big.eval()
                image_big, _ = make_inputs(side, cfg["text_cfg"]["context_length"], 650 + seed)
                outputs_big = reference_outputs(big.encode_image, big.encode_text,
                                                lambda i, t: big.get_logits(i, t)[0], image_big, tokens)
                cases.append({"name": name + "_resized_to_%d" % side, "weights": st_path, "config": config_path,
                              "dtype": "float32",
                              "expected": save_expected(out_dir, name + "_resized_%d" % side, outputs_big)})
    finally:
        shutil.rmtree(cfg_dir, ignore_errors=True)


# --- transformers -------------------------------------------------------------------------------------------
def hf_cases(out_dir, cases):
    # Heads not width/64 and exact GELU: the folder's config.json must be read, not guessed.
    text = dict(vocab_size=49408, hidden_size=64, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
                max_position_embeddings=77, hidden_act="gelu", bos_token_id=SOT, eos_token_id=EOT)
    vision = dict(hidden_size=96, intermediate_size=192, num_hidden_layers=2, num_attention_heads=3, image_size=32,
                  patch_size=8, hidden_act="gelu")
    config = transformers.CLIPConfig(text_config=text, vision_config=vision, projection_dim=40)
    torch.manual_seed(700)
    model = transformers.CLIPModel(config)
    randomize(model, 800)
    model.eval()
    image, tokens = make_inputs(32, 77, 900)

    def features(out):
        return out if isinstance(out, torch.Tensor) else out.pooler_output

    outputs = reference_outputs(lambda i: features(model.get_image_features(pixel_values=i)),
                                lambda t: features(model.get_text_features(input_ids=t)),
                                lambda i, t: model(input_ids=t, pixel_values=i).logits_per_image, image, tokens)
    folder = "hf_clip"
    model.save_pretrained(os.path.join(out_dir, folder), safe_serialization=True)
    # The image processor's constants travel in preprocessor_config.json; distinctive values to check.
    transformers.CLIPImageProcessor(image_mean=[0.25, 0.5, 0.75], image_std=[0.2, 0.3, 0.4]).save_pretrained(
        os.path.join(out_dir, folder))
    cases.append({"name": "hf_clip_folder", "weights": folder, "config": None, "dtype": "float32",
                  "expected": save_expected(out_dir, folder + "_expected", outputs)})


def main():
    args = fixture_cli.start(__doc__.splitlines()[0])  # --test-data unused: no test data files are needed
    torch.set_grad_enabled(True)
    torch.set_num_threads(2)
    cases = []
    openai_cases(args.out, cases)
    open_clip_cases(args.out, cases)
    hf_cases(args.out, cases)
    with open(os.path.join(args.out, "cases.json"), "w") as f:
        json.dump({"torch": torch.__version__, "open_clip": open_clip.__version__,
                   "transformers": transformers.__version__, "cases": cases}, f, indent=2)
    fixture_cli.finish(args.out)


if __name__ == "__main__":
    main()
