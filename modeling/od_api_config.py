"""The TF Object Detection API ``pipeline.config`` of a run (interop: for users who train
with the OD API's ``model_main_tf2.py``; docs/DESIGN_NOTES.md, decision 9 and
"Config and training").

Its numbers (input size, FPN levels, anchors, head sizes, learning rate and warm-up) are
read from the run's Model Garden experiment, the rest from the user config and preset.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from maskrcnn_toolkit.core.dataset_folder import DatasetFolder

if TYPE_CHECKING:  # annotations only: config.py imports this module
    from maskrcnn_toolkit.modeling.config import Run


def od_pipeline_config(run: Run) -> str:
    """The TF OD API text-proto ``TrainEvalPipelineConfig`` of the matching Mask R-CNN
    (faster_rcnn meta-architecture with a mask head). ``num_classes`` counts no background
    in the OD API (N), unlike Model Garden (N + 1).

    Every hyperparams block the OD API's builders require is written in full (regularizer,
    initializer, and for the feature extractor activation and batch norm), after the OD
    API's own TF2 configs (``faster_rcnn_resnet50_v1_fpn_640x640_coco17_tpu-8.config``,
    ``mask_rcnn_inception_resnet_v2_1024x1024_coco17_gpu-8.config``): an absent block
    fails in ``hyperparams_builder`` ("Unknown initializer function: None").
    ``fine_tune_checkpoint`` is left empty: our init checkpoints (registry names, Model
    Garden checkpoints) do not load in the OD API; the user puts an OD API one there.
    """
    u, p = run.user, run.preset
    size = run.image_size
    m = run.experiment.task.model
    opt = run.experiment.trainer.optimizer_config
    lr = opt.learning_rate.cosine.initial_learning_rate
    l2 = run.experiment.task.losses.l2_weight_decay
    adam = opt.optimizer.type == "adam"
    od_optimizer = "adam_optimizer" if adam else "momentum_optimizer"
    od_momentum = "" if adam else "      momentum_optimizer_value: 0.9\n"
    q = lambda s: '"' + str(s).replace("\\", "\\\\").replace('"', '\\"') + '"'  # noqa: E731
    mask_size = m.mask_roi_aligner.crop_size * m.mask_head.upsample_factor
    folder = DatasetFolder(run.data_dir)
    lm = folder.label_map
    scale = u.train.augment.scale
    aug = ""
    if u.train.augment.hflip:
        aug += "  data_augmentation_options {\n    random_horizontal_flip {\n    }\n  }\n"
    if scale != [1.0, 1.0]:
        aug += ("  data_augmentation_options {\n    random_image_scale {\n"
                f"      min_scale_ratio: {scale[0]}\n      max_scale_ratio: {scale[1]}\n"
                "    }\n  }\n")
    match = ("matches it" if u.model.preset == "r50_fpn" else
             "is the closest: the OD API has no feature extractor for this backbone")
    return f"""\
# TF Object Detection API pipeline for this run, generated from {run.config_path.name}
# (model preset {u.model.preset}; the feature extractor {p.od_feature_extractor}
# {match}).
model {{
  faster_rcnn {{
    num_classes: {max(run.label_map.ids)}
    number_of_stages: 3
    image_resizer {{
      fixed_shape_resizer {{
        height: {size}
        width: {size}
      }}
    }}
    feature_extractor {{
      type: {q(p.od_feature_extractor)}
      batch_norm_trainable: true
      fpn {{
        min_level: {m.min_level}
        max_level: {m.max_level}
      }}
      conv_hyperparams {{
        activation: RELU_6
        regularizer {{
          l2_regularizer {{
            weight: {l2}
          }}
        }}
        initializer {{
          truncated_normal_initializer {{
            stddev: 0.03
            mean: 0.0
          }}
        }}
        batch_norm {{
          scale: true
          decay: 0.997
          epsilon: 0.001
        }}
      }}
      override_base_feature_extractor_hyperparams: true
    }}
    first_stage_anchor_generator {{
      multiscale_anchor_generator {{
        min_level: {m.min_level}
        max_level: {m.max_level}
        anchor_scale: {m.anchor.anchor_size}
        aspect_ratios: [{", ".join(str(a) for a in m.anchor.aspect_ratios)}]
        scales_per_octave: {m.anchor.num_scales}
      }}
    }}
    first_stage_box_predictor_conv_hyperparams {{
      op: CONV
      regularizer {{
        l2_regularizer {{
          weight: {l2}
        }}
      }}
      initializer {{
        truncated_normal_initializer {{
          stddev: 0.01
        }}
      }}
    }}
    first_stage_nms_score_threshold: 0.0
    first_stage_nms_iou_threshold: {m.roi_generator.nms_iou_threshold}
    first_stage_max_proposals: {m.roi_generator.num_proposals}
    first_stage_localization_loss_weight: 1.0
    first_stage_objectness_loss_weight: 1.0
    initial_crop_size: {m.roi_aligner.crop_size * 2}
    maxpool_kernel_size: 2
    maxpool_stride: 2
    second_stage_batch_size: {m.roi_sampler.num_sampled_rois}
    second_stage_box_predictor {{
      mask_rcnn_box_predictor {{
        fc_hyperparams {{
          op: FC
          regularizer {{
            l2_regularizer {{
              weight: {l2}
            }}
          }}
          initializer {{
            variance_scaling_initializer {{
              factor: 1.0
              uniform: true
              mode: FAN_AVG
            }}
          }}
        }}
        use_dropout: false
        dropout_keep_probability: 1.0
        predict_instance_masks: true
        mask_height: {mask_size}
        mask_width: {mask_size}
        mask_prediction_conv_depth: {m.mask_head.num_filters}
        mask_prediction_num_conv_layers: {m.mask_head.num_convs}
        conv_hyperparams {{
          op: CONV
          regularizer {{
            l2_regularizer {{
              weight: {l2}
            }}
          }}
          initializer {{
            truncated_normal_initializer {{
              stddev: 0.01
            }}
          }}
        }}
      }}
    }}
    second_stage_post_processing {{
      batch_non_max_suppression {{
        score_threshold: {m.detection_generator.pre_nms_score_threshold}
        iou_threshold: {m.detection_generator.nms_iou_threshold}
        max_detections_per_class: {m.detection_generator.max_num_detections}
        max_total_detections: {m.detection_generator.max_num_detections}
      }}
      score_converter: SOFTMAX
    }}
    second_stage_localization_loss_weight: 1.0
    second_stage_classification_loss_weight: 1.0
    second_stage_mask_prediction_loss_weight: 1.0
  }}
}}
train_config {{
  batch_size: {u.train.batch_size}
  num_steps: {u.train.steps}
{aug}  optimizer {{
    {od_optimizer} {{
      learning_rate {{
        cosine_decay_learning_rate {{
          learning_rate_base: {lr}
          total_steps: {u.train.steps}
          warmup_learning_rate: {opt.warmup.linear.warmup_learning_rate}
          warmup_steps: {opt.warmup.linear.warmup_steps}
        }}
      }}
{od_momentum}    }}
    use_moving_average: false
  }}
  # Empty: train from scratch. To fine-tune, put an OD API (TF2) checkpoint here, e.g.
  # "PATH/checkpoint/ckpt-0" of a TF2 Detection Model Zoo Mask/Faster R-CNN. Model Garden
  # checkpoints (model.init_checkpoint, our runs, the registry) do not load in the OD API.
  fine_tune_checkpoint: ""
  fine_tune_checkpoint_type: "detection"
  fine_tune_checkpoint_version: V2
}}
train_input_reader {{
  label_map_path: {q(lm)}
  load_instance_masks: true
  mask_type: PNG_MASKS
  tf_record_input_reader {{
    input_path: {q(folder.shard_pattern("train"))}
  }}
}}
eval_config {{
  metrics_set: "coco_detection_metrics"
  metrics_set: "coco_mask_metrics"
  eval_instance_masks: true
  use_moving_averages: false
  batch_size: 1
}}
eval_input_reader {{
  label_map_path: {q(lm)}
  shuffle: false
  num_epochs: 1
  load_instance_masks: true
  mask_type: PNG_MASKS
  tf_record_input_reader {{
    input_path: {q(folder.shard_pattern("val"))}
  }}
}}
"""
