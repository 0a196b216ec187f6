"""The encoder against open_clip: frame mixing is CLIP per frame, joint mixing reduces to it on static input."""

import json
from dataclasses import replace

import numpy as np
import open_clip
import pytest
import torch

from vidsearch import registry
from vidsearch.config import ModelConfig
from vidsearch.model import VideoTextModel

SMALL_VIT = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "patch_size": 8, "width": 48, "layers": 2, "head_width": 16},
    "text_cfg": {"context_length": 12, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
    """A random-init open_clip ViT saved to disk, to be loaded back through open_clip's loader."""
    torch.manual_seed(123)
    clip = open_clip.CLIP(**SMALL_VIT)
    with torch.no_grad():  # make every parameter matter (open_clip zero-inits some biases)
        for p in clip.parameters():
            p.add_(0.02 * torch.randn_like(p))
    path = tmp_path_factory.mktemp("weights") / "small_vit.pt"
    torch.save(clip.state_dict(), path)
    return path, clip


def load(weights_file, **overrides) -> VideoTextModel:
    path, _ = weights_file
    config = ModelConfig(name="small", clip_arch=SMALL_VIT, pretrained=str(path), max_frames=8, **overrides)
    return registry.build_model(config).eval()


def test_weights_come_from_the_local_file(weights_file):
    model = load(weights_file)
    _, original = weights_file
    for (name, a), b in zip(model.clip.state_dict().items(), original.state_dict().values()):
        assert torch.equal(a, b), name


def test_frame_mixing_equals_clip_per_frame_then_mean(weights_file):
    model = load(weights_file, temporal_mixing="frame")
    video = torch.randn(2, 5, 3, 32, 32)
    with torch.no_grad():
        out = model.encode_video(video)
        per_frame = model.clip.encode_image(video.flatten(0, 1)).view(2, 5, -1)
    torch.testing.assert_close(out.slices, per_frame, atol=1e-5, rtol=0)
    torch.testing.assert_close(out.window, per_frame.mean(dim=1), atol=1e-5, rtol=0)


def test_joint_mixing_on_one_frame_equals_frame_mixing(weights_file):
    joint, frame = load(weights_file, temporal_mixing="joint"), load(weights_file, temporal_mixing="frame")
    video = torch.randn(3, 1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(joint.encode_video(video).window, frame.encode_video(video).window, atol=1e-5, rtol=0)


@pytest.mark.parametrize("tubelet", [1, 2])
def test_static_clip_embeds_like_the_image(weights_file, tubelet):
    model = load(weights_file, temporal_mixing="joint", tubelet_size=tubelet)
    image = torch.randn(2, 1, 3, 32, 32)
    with torch.no_grad():
        expected = model.clip.encode_image(image[:, 0])
        out = model.encode_video(image.repeat(1, 4, 1, 1, 1))
    torch.testing.assert_close(out.window, expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(out.slices, expected[:, None].expand_as(out.slices), atol=1e-5, rtol=0)


def test_joint_mixing_really_mixes_time(weights_file):
    model = load(weights_file, temporal_mixing="joint")
    video = torch.randn(1, 4, 3, 32, 32)
    changed = video.clone()
    changed[:, 3] = torch.randn(3, 32, 32)
    with torch.no_grad():
        a, b = model.encode_video(video).slices, model.encode_video(changed).slices
    assert not torch.allclose(a[:, 0], b[:, 0], atol=1e-4)  # slice 0 saw the change in slice 3
    frame = load(weights_file, temporal_mixing="frame")
    with torch.no_grad():
        torch.testing.assert_close(frame.encode_video(video).slices[:, 0], frame.encode_video(changed).slices[:, 0])


def test_frame_mixing_stays_order_blind_even_with_a_trained_temporal_embedding(weights_file):
    frame = load(weights_file, temporal_mixing="frame")
    assert not frame.temporal_embedding.requires_grad
    with torch.no_grad():
        frame.temporal_embedding.normal_()
        video = torch.randn(1, 4, 3, 32, 32)
        reversed_video = video.flip(1)
        torch.testing.assert_close(frame.encode_video(video).window, frame.encode_video(reversed_video).window)


def test_temporal_embedding_interpolates_to_longer_clips(weights_file):
    model = load(weights_file, temporal_mixing="joint")  # trained for 8 frames
    with torch.no_grad():
        model.temporal_embedding.copy_(torch.linspace(0, 1, 8)[:, None].expand(8, 48))
        stretched = model.temporal_positions(15)
        out = model.encode_video(torch.randn(1, 15, 3, 32, 32))
    assert stretched.shape == (15, 48)
    torch.testing.assert_close(stretched[:, 0], torch.linspace(0, 1, 15))
    assert out.slices.shape == (1, 15, 32) and torch.isfinite(out.slices).all()


def test_mean_pooling_gives_slices_and_window(weights_file):
    model = load(weights_file, temporal_mixing="joint", pooling="mean")
    with torch.no_grad():
        out = model.encode_video(torch.randn(2, 3, 3, 32, 32))
    assert out.slices.shape == (2, 3, 32) and out.window.shape == (2, 32)


def test_masking_keeps_cls_and_drops_the_asked_share(weights_file):
    model = load(weights_file, temporal_mixing="joint")
    tokens = model.embed_tokens(torch.randn(2, 4, 3, 32, 32))  # 16 patches + CLS per slice
    kept = model.drop_tokens(tokens, keep_ratio=0.25)
    assert kept.shape == (2, 4, 1 + 4, 48)
    torch.testing.assert_close(kept[:, :, 0], tokens[:, :, 0])
    with torch.no_grad():
        out = model.encode_video(torch.randn(2, 4, 3, 32, 32), keep_ratio=0.25)
    assert out.window.shape == (2, 32)


def test_text_tower_is_open_clips(weights_file):
    model = load(weights_file)
    path, _ = weights_file
    torch.manual_seed(7)  # another random init, so only loading the file can make the towers agree
    reference = open_clip.CLIP(**SMALL_VIT).eval()
    open_clip.load_checkpoint(reference, str(path))
    tokens = open_clip.tokenizer.SimpleTokenizer(context_length=12)(["a red circle moving left", "a blue square"])
    with torch.no_grad():
        torch.testing.assert_close(model.encode_text(tokens), reference.encode_text(tokens))


def test_checkpoint_folder_round_trip(weights_file, tmp_path):
    model = load(weights_file, temporal_mixing="joint")
    with torch.no_grad():
        model.temporal_embedding.normal_()
    config = ModelConfig(name="small", clip_arch=SMALL_VIT, pretrained="/nonexistent.pt", temporal_mixing="joint",
                         max_frames=8)
    registry.save_checkpoint(model, config, tmp_path / "ckpt")
    saved = json.loads((tmp_path / "ckpt" / "config.json").read_text())
    assert saved["pretrained"] is None and saved["temporal_mixing"] == "joint"
    _, loaded = registry.load_model(str(tmp_path / "ckpt"))
    video = torch.randn(1, 3, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded.eval().encode_video(video).window, model.encode_video(video).window)
    spec = str(tmp_path / "ckpt")
    stamp, before = registry.weights_stamp(spec), registry.fingerprint(spec)
    assert registry.fingerprint(spec, weights=stamp) == before
    # a recorded stamp whose size and mtime match is trusted (no re-hash) ...
    assert registry.fingerprint(spec, weights={**stamp, "sha256": "0" * 64}) != before
    # ... and a rewritten weights file is hashed again, so the change is seen
    with torch.no_grad():
        model.temporal_embedding.normal_()
    registry.save_checkpoint(model, config, tmp_path / "ckpt")
    assert registry.fingerprint(spec, weights=stamp) == registry.fingerprint(spec) != before


def test_missing_weights_give_one_clear_line(weights_file):
    config = ModelConfig(name="small", clip_arch=SMALL_VIT, pretrained="/no/such/weights.pt")
    with pytest.raises(registry.ModelUnavailable, match="--model tiny"):
        registry.build_model(config)
    named = replace(registry.resolve("clip-b32")[0], pretrained="no-such-tag")
    with pytest.raises(registry.ModelUnavailable, match="--model tiny"):
        registry.build_model(named)


def test_registry_lists_the_shipped_models():
    names = {c.name for c in registry.list_models()}
    assert {"tiny", "clip-b32", "clip-b16", "clip-l14", "longvivit-b32"} <= names
    assert registry.resolve("longvivit-b32")[0].temporal_mixing == "joint"
    assert registry.resolve("clip-b32")[0].temporal_mixing == "frame"


def test_train_last_k_freezes_all_but_the_last_blocks_the_temporal_embedding_and_heads(weights_file):
    model = load(weights_file, temporal_mixing="joint")
    model.train_only_last(1)
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert "temporal_embedding" in trainable and "clip.visual.proj" in trainable and "clip.logit_scale" in trainable
    assert any(n.startswith("clip.visual.transformer.resblocks.1.") for n in trainable)
    assert not any(n.startswith("clip.visual.transformer.resblocks.0.") for n in trainable)
    assert not any(n.startswith("clip.transformer.") for n in trainable)  # the text tower's blocks stay frozen
    assert "tubelet.weight" not in trainable


@pytest.mark.parametrize("quick_gelu", [False, True])
def test_the_torch_only_text_tower_equals_open_clips_encode_text(tmp_path, quick_gelu):
    arch = {**SMALL_VIT, "quick_gelu": quick_gelu}
    config = ModelConfig(name="small", clip_arch=arch, temporal_mixing="joint", max_frames=8)
    model = registry.build_model(config).eval()
    with torch.no_grad():
        for p in model.clip.parameters():
            p.add_(0.02 * torch.randn_like(p))
    registry.save_checkpoint(model, config, tmp_path / "ckpt")
    _, tower, tokenizer = registry.load_text_tower(str(tmp_path / "ckpt"))
    tokens = tokenizer(["a red circle moving left", "chopping onions on a wooden board"])
    lengths = []
    tower.ln_final.register_forward_hook(lambda module, args, out: lengths.append(args[0].shape[1]))
    with torch.no_grad():
        torch.testing.assert_close(tower(tokens), model.clip.encode_text(tokens), atol=1e-5, rtol=0)
        torch.testing.assert_close(tower(tokens[:1]), model.clip.encode_text(tokens[:1]), atol=1e-5, rtol=0)
    # only the tokens up to the longest text's end-of-text go through the blocks, not the 77-token context
    assert lengths == [int(tokens.argmax(-1).max()) + 1, int(tokens[0].argmax()) + 1]
    assert lengths[1] < lengths[0] < tokens.shape[1]
    assert registry.load_text_tower("tiny") is None  # random init: only the full build reproduces its weights


@pytest.mark.parametrize("native_bf16", [False, True])
def test_query_text_vectors_keep_fp32_s_direction_with_bf16_weights_where_the_cpu_runs_bf16(tmp_path, monkeypatch,
                                                                                           native_bf16):
    from vidsearch import encoder as encoder_module

    config = ModelConfig(name="small", clip_arch=SMALL_VIT, temporal_mixing="joint", max_frames=8)
    model = registry.build_model(config).eval()
    registry.save_checkpoint(model, config, tmp_path / "ckpt")
    monkeypatch.setattr(encoder_module, "cpu_runs_bf16", lambda: native_bf16)
    texts = ["a red circle moving left", "chopping onions on a wooden board"]
    text_encoder = encoder_module.TextEncoder(str(tmp_path / "ckpt"), "cpu")
    assert text_encoder._tower.text_projection.dtype == (torch.bfloat16 if native_bf16 else torch.float32)
    vectors = text_encoder.encode_text(texts)
    with torch.no_grad():
        reference = torch.nn.functional.normalize(model.clip.encode_text(text_encoder.tokenizer(texts)), dim=-1)
    cosines = (torch.from_numpy(vectors) * reference).sum(-1)
    assert vectors.dtype == np.float32
    if native_bf16:
        assert cosines.min() > 0.999 and not np.allclose(vectors, reference.numpy(), atol=1e-6)
    else:
        np.testing.assert_allclose(vectors, reference.numpy(), atol=1e-5)


@pytest.mark.parametrize("mixing, pooling, tubelet", [("frame", "cls", 1), ("joint", "cls", 1), ("joint", "mean", 2),
                                                     ("frame", "mean", 2)])
def test_clips_encoded_in_one_batch_equal_clips_encoded_alone(mixing, pooling, tubelet):
    """Windows of different lengths (cut short at scene cuts) share a forward pass: padded to the longest, with the
    padding masked from attention and pooling, each comes out as it does alone; lengths past the temporal table
    (max_frames 4 here) take their own interpolated positions."""
    from vidsearch.encoder import Encoder

    config = replace(registry.resolve("tiny")[0], temporal_mixing=mixing, pooling=pooling, tubelet_size=tubelet, max_frames=4)
    torch.manual_seed(0)
    model = registry.build_model(config)
    with torch.no_grad():
        model.temporal_embedding.add_(torch.randn_like(model.temporal_embedding))  # positions matter
    encoder = Encoder(config, model, torch.device("cpu"))
    lengths = [5, 2, 9, 1, 6]
    clips = [np.random.default_rng(i).integers(0, 255, (n, 64, 64, 3), dtype=np.uint8) for i, n in enumerate(lengths)]
    together = encoder.encode_clips(clips)
    for clip, (slices, window) in zip(clips, together):
        alone_slices, alone_window = encoder.encode_clip(clip)
        assert slices.shape == alone_slices.shape == (-(-len(clip) // tubelet), 64)
        np.testing.assert_allclose(slices, alone_slices, atol=1e-5)
        np.testing.assert_allclose(window, alone_window, atol=1e-5)
    if mixing == "joint":  # the mask is what keeps them apart: without it the padding moves every shorter window
        video = encoder.model.normalize_frames(torch.from_numpy(np.stack([np.concatenate([c, np.repeat(c[-1:], 10 - len(c), 0)])
                                                                         for c in clips])))
        with torch.no_grad():
            unmasked = encoder.model.encode_video(video).window.numpy()
        assert not np.allclose(unmasked[1], together[1][1], atol=1e-3)
    assert encoder.windows_per_batch(256) == 1  # on the CPU


def test_clips_of_different_lengths_batch_under_bf16_autocast():
    """The GPU path's precision, forced on the CPU: a mixed-length batch under bf16 autocast matches each clip alone
    under it, to bf16's precision."""
    from vidsearch.encoder import Encoder

    config = registry.resolve("tiny")[0]
    torch.manual_seed(0)
    encoder = Encoder(config, registry.build_model(config), torch.device("cpu"))
    clips = [np.random.default_rng(i).integers(0, 255, (n, 64, 64, 3), dtype=np.uint8) for i, n in enumerate([7, 3, 16])]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        together = encoder.encode_clips(clips)
        alone = [encoder.encode_clip(clip) for clip in clips]
    for (slices, window), (alone_slices, alone_window) in zip(together, alone):
        assert slices.shape == alone_slices.shape
        cosine = window @ alone_window / np.linalg.norm(window) / np.linalg.norm(alone_window)
        assert cosine > 0.999
