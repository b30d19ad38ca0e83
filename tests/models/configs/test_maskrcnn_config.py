"""models.configs.maskrcnn: the `variant` switch and the checks of the mimic settings."""

import pytest

from models.configs import maskrcnn as config


@pytest.mark.parametrize("variant,stages,modulated,pooling,pool_modulated", [
    ("regular", [], False, False, False),
    ("dcnv1", [5], False, True, False),
    ("dcnv2", [3, 4, 5], True, True, True),
])
def test_resolve_variant(variant, stages, modulated, pooling, pool_modulated):
    model = config.DcnMaskRCNN(variant=variant)
    resolved = config.resolve_variant(model)
    assert resolved.backbone.dcn_resnet.deformable_stages == stages
    assert resolved.backbone.dcn_resnet.modulated == modulated
    for aligner in (resolved.roi_aligner, resolved.mask_roi_aligner):
        assert (aligner.deformable, aligner.modulated) == (pooling, pool_modulated)
    assert (resolved.roi_aligner.crop_size, resolved.mask_roi_aligner.crop_size) == (7, 14)
    assert model.variant == variant and model.backbone.dcn_resnet.deformable_stages == [
        3, 4, 5]  # the input config is left alone


def test_custom_variant_keeps_fields_and_bad_variants_fail():
    model = config.DcnMaskRCNN(variant="custom")
    model.backbone.dcn_resnet.deformable_stages = [4]
    model.roi_aligner.deformable = False
    resolved = config.resolve_variant(model)
    assert resolved.backbone.dcn_resnet.deformable_stages == [4]
    assert not resolved.roi_aligner.deformable
    with pytest.raises(ValueError, match="variant"):
        config.resolve_variant(config.DcnMaskRCNN(variant="dcnv3"))
    resnet = config.DcnMaskRCNN(variant="dcnv2")
    resnet.backbone.type = "resnet"
    with pytest.raises(ValueError, match="dcn_resnet"):
        config.resolve_variant(resnet)
    resnet.variant = "regular"  # a plain Model Garden ResNet is fine without DCN
    assert config.resolve_variant(resnet).backbone.type == "resnet"


@pytest.mark.parametrize("field,value,match", [
    ("roi_type", "hard", "roi_type"),
    ("reduction", "max", "reduction"),
    ("rois_per_image", 0, "positive"),
    ("crop_size", 200, "multiple of 32"),
])
def test_bad_mimic_settings_fail(field, value, match):
    model = config.DcnMaskRCNN(max_level=6)
    model.mimic.enabled = True
    setattr(model.mimic, field, value)
    with pytest.raises(ValueError, match=match):
        config.resolve_variant(model)
