#!/usr/bin/env bash
# Where the split's accuracy goes (issue 24), each at the main chain's budget (codec 500 + adaptation 3,000
# iterations, as benchmarks/converge_fashion_det.sh's codec and adapt stages, against cloud_plus' 3,500):
#   benchmarks/ablate_fashion_det.sh ABLATION [KEY VALUE ...]
#   teacher_trunk  the teacher's own stem+res2 (32 channels) as the edge trunk: what the codec alone costs
#   teacher_passthrough  the teacher's stem+res2 and no codec (float32 sent as is): the adaptation, nothing lost at the split
#   teacher_wide_codec   teacher_trunk with the codec's layers twice as wide (CODEC.HIDDEN_CHANNELS 128)
#   teacher_long_codec   teacher_trunk with the codec pre-trained 2,000 iterations (500 in the chain)
#   teacher_wide_joint   teacher_wide_codec with the teacher's stem+res2 trained with the cloud in the adaptation
#                  (DISTILL.FREEZE []; frozen in the codec's pre-training): the split trained as the cloud-only baseline is
#   wide_latent    the quarter-width edge trunk with a 48-channel latent (24 in the main chain)
#   near_lossless  the quarter-width edge trunk, rate weights 1/16 of the chain's: does the codec cap AP whatever the rate?
#   res3           the split after res3 (edge KD at res3 first, 2,000 iterations; the cloud's FPN from p3)
#   joint_ds1      joint adaptation with the latent at res2's stride 4 (CODEC.DOWNSAMPLE 1; the chain's: 2, stride 8)
#                  and rate weights 1/4 to 4: whether the small objects' AP lost to the stride-8 latent comes back
#   joint_nofeat   joint adaptation from the chain's codec without feature matching to the teacher
#                  (DISTILL.FEATURE_WEIGHT 0; ROI distillation kept): whether matching the teacher's features holds the
#                  split at the teacher's accuracy while the equal-budget cloud climbs past it
#   joint_task     the same with no distillation at all (task and rate losses only, the edge's included)
#   joint_decay    joint adaptation with the cloud's distillation weights decayed to 0 over the run (DISTILL.DECAY
#                  cosine): aligned to the teacher first, free of it at the end
#   joint_wide_codec  joint adaptation (the chain's quarter-width edge trained with the cloud) with the codec's layers
#                  twice as wide (CODEC.HIDDEN_CHANNELS 128, its own 500-iteration pre-training): the lever
#                  teacher_wide_codec points to, on the shipped joint chain
# ADAPT_ITERS sets the second stage's iterations (default 3,000; the budget is codec_iters + ADAPT_ITERS).
# Needs $OUT/teacher.pth and $OUT/edge.pth of the main chain; writes $OUT/ablate_<ABLATION>/ (adapt.pth) and is
# resumable like the main chain. DEVICE=cuda on a GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-output/converge}"
CONVERGE="$PWD/benchmarks/converge_fashion_det.sh"
name="$1"; shift
second=adapt  # the stage after the codec's: adapt (edge frozen) or joint
second_opts=()  # overrides of that stage only
sweep=rates=all  # the val sweep: every rate level of the variable-rate codec
codec_iters=500  # the codec's pre-training
dir="$OUT/ablate_$name"
mkdir -p "$dir"
ln -sf "$(realpath "$OUT/teacher.pth")" "$dir/teacher.pth"
case "$name" in
  teacher_trunk|teacher_passthrough|teacher_wide_codec|teacher_long_codec|teacher_wide_joint)
    [ -f "$dir/edge.pth" ] || "${PY:-.venv/bin/python}" tools/export_checkpoint.py "$OUT/teacher.pth" "$dir/edge.pth" \
      --keep backbone.bottom_up.stem backbone.bottom_up.res2  # the edge trunk: the teacher's own stem and res2
    opts=(MODEL.ECCENTRIC.EDGE.RESNETS.STEM_OUT_CHANNELS 32 MODEL.ECCENTRIC.EDGE.RESNETS.RES2_OUT_CHANNELS 32
          MODEL.ECCENTRIC.EDGE.DETECTOR False)
    case "$name" in
      teacher_passthrough)  # no codec stage: the teacher itself stands in for its checkpoint
        mkdir -p "$dir/codec"; ln -sf "$(realpath "$OUT/teacher.pth")" "$dir/codec/model_final.pth"
        ln -sf "$(realpath "$OUT/teacher.pth")" "$dir/codec.pth"
        opts+=(MODEL.ECCENTRIC.CODEC.NAME passthrough MODEL.ECCENTRIC.CODEC.RATE_WEIGHTS "[]" MODEL.ECCENTRIC.CODEC.RATE 0.0)
        sweep="weights=$dir/adapt.pth" ;;  # one point: one rate
      teacher_wide_codec) opts+=(MODEL.ECCENTRIC.CODEC.HIDDEN_CHANNELS 128) ;;
      teacher_wide_joint) opts+=(MODEL.ECCENTRIC.CODEC.HIDDEN_CHANNELS 128); second_opts=(MODEL.ECCENTRIC.DISTILL.FREEZE "[]") ;;
      teacher_long_codec) codec_iters=2000 ;;
    esac ;;
  wide_latent)
    ln -sf "$(realpath "$OUT/edge.pth")" "$dir/edge.pth"
    opts=(MODEL.ECCENTRIC.CODEC.LATENT_CHANNELS 48) ;;
  near_lossless)
    ln -sf "$(realpath "$OUT/edge.pth")" "$dir/edge.pth"
    opts=(MODEL.ECCENTRIC.CODEC.RATE_WEIGHTS "[0.0078125, 0.015625, 0.03125, 0.0625, 0.125]") ;;
  res3)  # the cloud receives res3 only, so its FPN (and the edge detector's) starts at p3; the latent stays at
         # stride 8 like the res2 chain's (CODEC.DOWNSAMPLE 1)
    opts=(MODEL.ECCENTRIC.SPLIT_AT res3 MODEL.RESNETS.OUT_FEATURES "['res3','res4','res5']"
          MODEL.FPN.IN_FEATURES "['res3','res4','res5']" MODEL.ANCHOR_GENERATOR.SIZES "[[32],[64],[128],[256]]"
          MODEL.RPN.IN_FEATURES "['p3','p4','p5','p6']" MODEL.ROI_HEADS.IN_FEATURES "['p3','p4','p5']"
          MODEL.ECCENTRIC.CODEC.DOWNSAMPLE 1)
    export SPLIT=res3
    [ -f "$dir/edge.pth" ] || OUT="$dir" bash "$CONVERGE" edge SOLVER.MAX_ITER 2000 "${opts[@]}" "$@" ;;
  joint_ds1)
    ln -sf "$(realpath "$OUT/edge.pth")" "$dir/edge.pth"
    second=joint
    opts=(MODEL.ECCENTRIC.CODEC.DOWNSAMPLE 1 MODEL.ECCENTRIC.CODEC.RATE_WEIGHTS "[0.25, 0.5, 1.0, 2.0, 4.0]") ;;
  joint_wide_codec)
    ln -sf "$(realpath "$OUT/edge.pth")" "$dir/edge.pth"
    second=joint
    opts=(MODEL.ECCENTRIC.CODEC.HIDDEN_CHANNELS 128) ;;
  joint_nofeat|joint_task|joint_decay)  # the adaptation objective; the chain's codec (500 its) is shared, not retrained
    ln -sf "$(realpath "$OUT/edge.pth")" "$dir/edge.pth"
    ln -sfn "$(realpath "$OUT/codec")" "$dir/codec"; ln -sf "$(realpath "$OUT/codec.pth")" "$dir/codec.pth"
    second=joint
    case "$name" in
      joint_nofeat) opts=(MODEL.ECCENTRIC.DISTILL.FEATURE_WEIGHT 0.0) ;;
      joint_task) opts=(MODEL.ECCENTRIC.DISTILL.FEATURE_WEIGHT 0.0 MODEL.ECCENTRIC.DISTILL.LOGIT_WEIGHT 0.0
                        MODEL.ECCENTRIC.DISTILL.BOX_WEIGHT 0.0) ;;
      joint_decay) opts=(MODEL.ECCENTRIC.DISTILL.DECAY cosine) ;;
    esac ;;
  *) echo "unknown ablation $name (teacher_trunk teacher_passthrough teacher_wide_codec teacher_long_codec teacher_wide_joint wide_latent near_lossless res3 joint_ds1 joint_nofeat joint_task joint_decay joint_wide_codec)" >&2
     exit 2 ;;
esac
[ -f "$dir/codec.pth" ] || OUT="$dir" bash "$CONVERGE" codec SOLVER.MAX_ITER "$codec_iters" "${opts[@]}" "$@"
[ -f "$dir/$second.pth" ] || OUT="$dir" bash "$CONVERGE" "$second" SOLVER.MAX_ITER "${ADAPT_ITERS:-3000}" "${opts[@]}" "${second_opts[@]}" "$@"
# its val front beside the main chain's (merge with tools/pareto.py --results)
[ -f "$dir/eval/pareto.json" ] || "${PY:-.venv/bin/python}" tools/pareto.py --config-file \
  configs/FashionDet/adaptive_ecc_vr.yaml --sweep "$sweep" --dataset fashion_det_val --bootstrap 200 \
  --output "$dir/eval" -- MODEL.WEIGHTS "$dir/$second.pth" MODEL.ECCENTRIC.EDGE.WEIGHTS "" \
  MODEL.DEVICE "${DEVICE:-cpu}" "${opts[@]}" "$@"
