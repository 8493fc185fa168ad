"""Model presets: the Model Garden settings behind each ``model.preset`` name.

A preset overrides ``task.model`` of Model Garden's ``maskrcnn_resnetfpn_coco`` experiment
(backbone, head widths, RoI counts) and gives the defaults that go with it: the input
size, the feature levels, the learning rate per image of batch and the warm-up.
"""
from __future__ import annotations

from dataclasses import dataclass

MIN_LEVEL, MAX_LEVEL = 2, 6  # FPN levels of the ResNet and MobileNet presets

_SLIM_HEADS = {
    # Stock 256-filter heads cost ~30x the ResNet-18 backbone on CPU at 256 px (measured on
    # 2 cores, batch 2: 16.7 s a step and 32.2 M parameters, vs 0.56 s and 12.3 M with
    # these); these keep the architecture and cut the width.
    "decoder": {"type": "fpn", "fpn": {"num_filters": 64}},
    "rpn_head": {"num_filters": 64},
    "detection_head": {"num_convs": 0, "num_fcs": 1, "fc_dims": 256},
    "mask_head": {"num_convs": 2, "num_filters": 64},
    "roi_sampler": {"num_sampled_rois": 128},
    "mask_sampler": {"num_sampled_masks": 32},
    "roi_generator": {"num_proposals": 200, "test_num_proposals": 200,
                      "pre_nms_top_k": 1000, "test_pre_nms_top_k": 1000},
}


@dataclass(frozen=True)
class Preset:
    description: str
    model: dict  # overrides of task.model
    image_size: int
    lr_per_image: float  # default learning rate = lr_per_image * batch size
    warmup_steps: int
    od_feature_extractor: str  # the closest TF OD API feature extractor (pipeline.config)
    # Feature levels the heads see; image sides must divide by 2**max_level.
    min_level: int = MIN_LEVEL
    max_level: int = MAX_LEVEL


PRESETS: dict[str, Preset] = {
    "slim_r18_fpn": Preset(
        "ResNet-18 + FPN with slim heads (FPN 64, fc 256, 2x64 mask head): CPU friendly, "
        "from scratch (no ResNet-18 weights are in the checkpoint registry)",
        {"backbone": {"type": "resnet", "resnet": {"model_id": 18}}, **_SLIM_HEADS},
        256, 0.01, 100, "faster_rcnn_resnet50_fpn_keras"),
    # The demo's model (docs/DESIGN_NOTES.md, Demo, session 5): at half width the backbone
    # costs ~1/4 as much, a step ~0.7x as long, and from scratch the extra steps that buys
    # in the same minutes outweigh the width (mask AP 0.61-0.62 at 1,500 steps vs ~0.5 at 1,000
    # full-width steps, same wall time).
    "half_r18_fpn": Preset(
        "ResNet-18 at half width + FPN, the same slim heads: most AP per CPU minute from scratch",
        {"backbone": {"type": "resnet", "resnet": {"model_id": 18, "depth_multiplier": 0.5}},
         **_SLIM_HEADS},
        256, 0.01, 100, "faster_rcnn_resnet50_fpn_keras"),
    "slim_mobilenetv2_fpn": Preset(
        "MobileNetV2 + FPN with the same slim heads: as fast as half_r18_fpn on CPU",
        {"backbone": {"type": "mobilenet", "mobilenet": {"model_id": "MobileNetV2"}},
         **_SLIM_HEADS},
        256, 0.01, 100, "faster_rcnn_resnet50_fpn_keras"),
    "r50_fpn": Preset(
        "stock Model Garden Mask R-CNN ResNet-50 + FPN (COCO layout), for a GPU",
        {"backbone": {"type": "resnet", "resnet": {"model_id": 50}}},
        1024, 0.0025, 500, "faster_rcnn_resnet50_fpn_keras"),
    # The CPU-sized pretrained start: the backbone of Model Garden's COCO RetinaNet
    # SpineNet-49-mobile (registry: retinanet_spinenet49mobile_coco) in that checkpoint's
    # layout, as Model Garden's retinanet_mobile_coco experiment builds it: its backbone
    # settings, no decoder (identity: the backbone already fuses scales), levels 3-7, its
    # batch-norm constants and swish, 384 px. (The published coco_spinenet49_mobile_tpu.yaml
    # now says hard_swish; an activation has no variables, so the restore is the same.)
    # Stochastic depth stays off: a from-scratch COCO regularizer, not needed to fine-tune.
    # The heads are the slim ones, fed by the backbone's 48-channel levels; the anchors are
    # those of Model Garden's maskrcnn_spinenet_coco for levels 3-7 (size 3: 24-384 px).
    "spinenet49_mobile": Preset(
        "Mobile SpineNet-49 (2.3 M parameters in Model Garden's COCO RetinaNet), slim heads: "
        "fine-tunes from retinanet_spinenet49mobile_coco on a CPU",
        {"backbone": {"type": "spinenet_mobile",
                      "spinenet_mobile": {"model_id": "49", "se_ratio": 0.2, "expand_ratio": 6,
                                          "min_level": 3, "max_level": 7,
                                          "use_keras_upsampling_2d": False}},
         "norm_activation": {"activation": "swish", "norm_momentum": 0.99,
                             "norm_epsilon": 0.001},
         "anchor": {"anchor_size": 3},
         **_SLIM_HEADS,
         "decoder": {"type": "identity"}},
        384, 0.01, 100, "faster_rcnn_resnet50_fpn_keras", min_level=3, max_level=7),
    "tiny_r18_fpn": Preset(
        "a quarter-width ResNet-18 with tiny heads: smoke tests only, learns little",
        {"backbone": {"type": "resnet", "resnet": {"model_id": 18, "depth_multiplier": 0.25}},
         "decoder": {"type": "fpn", "fpn": {"num_filters": 32}},
         "rpn_head": {"num_filters": 32},
         "detection_head": {"num_convs": 0, "num_fcs": 1, "fc_dims": 64},
         "mask_head": {"num_convs": 1, "num_filters": 16},
         "roi_sampler": {"num_sampled_rois": 32},
         "mask_sampler": {"num_sampled_masks": 8},
         "roi_generator": {"num_proposals": 50, "test_num_proposals": 50,
                           "pre_nms_top_k": 300, "test_pre_nms_top_k": 300},
         "detection_generator": {"max_num_detections": 20}},
        128, 0.01, 10, "faster_rcnn_resnet50_fpn_keras"),
}
