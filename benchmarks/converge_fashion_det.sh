#!/usr/bin/env bash
# Train FashionDet's models to a plateau, one stage at a time, each with its learning curve on the held-out
# tenth of the training images (fashion_det_train_holdout; the stage trains on fashion_det_train_fit).
#   benchmarks/converge_fashion_det.sh STAGE [KEY VALUE ...]
# STAGE, in order: teacher, edge, codec, adapt (and joint), cloud_plus (the equal-budget cloud-only baseline).
# Each stage's final weights are exported (fp16) to $OUT/<stage>.pth for the next stage.
# Resumable: run it again and Detectron2 resumes from OUTPUT_DIR's last checkpoint (--resume).
# CPU: one core per stage (OMP_NUM_THREADS=1). GPU: DEVICE=cuda benchmarks/converge_fashion_det.sh teacher
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PY:-.venv/bin/python}"
DEVICE="${DEVICE:-cpu}"
OUT="${OUT:-output/converge}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
HOLDOUT="[['fashion_det_train_fit','subset','fashion_det_train','train',0.1],['fashion_det_train_holdout','subset','fashion_det_train','holdout',0.1]]"
CURVE=(DATASETS.REGISTER "$HOLDOUT" DATASETS.TRAIN "('fashion_det_train_fit',)" DATASETS.TEST "('fashion_det_train_holdout',)"
       MODEL.DEVICE "$DEVICE")
stage="$1"; shift
T="$OUT/teacher.pth"; E="$OUT/edge.pth"
train() {  # config, output folder, iterations, overrides...
  local config="$1" out="$2" iters="$3"; shift 3
  "$PY" tools/train_net.py --resume --config-file "configs/FashionDet/$config.yaml" "${CURVE[@]}" \
    MODEL.ECCENTRIC.DISTILL.TEACHER_WEIGHTS "$T" SOLVER.MAX_ITER "$iters" TEST.EVAL_PERIOD 500 \
    SOLVER.CHECKPOINT_PERIOD 500 OUTPUT_DIR "$OUT/$out" "$@"
}
case "$stage" in
  teacher)  # the cloud detector (slim R-18 FPN 96) from scratch
    "$PY" tools/train_net.py --resume --config-file configs/FashionDet/cloud_teacher.yaml "${CURVE[@]}" \
      SOLVER.MAX_ITER 4000 TEST.EVAL_PERIOD 500 SOLVER.CHECKPOINT_PERIOD 500 OUTPUT_DIR "$OUT/teacher" "$@" ;;
  edge)  # the quarter-width edge detector, distilled from the converged teacher
    train edge_kd edge 3000 "$@" ;;
  codec)  # codec v2 pre-trained on reconstruction of the teacher's split feature
    train codec_pretrain codec 1000 MODEL.WEIGHTS "$T" MODEL.ECCENTRIC.EDGE.WEIGHTS "$E" "$@" ;;
  adapt)  # knowledge adaptation of the cloud tail and heads to the coded features (edge frozen)
    train adaptive_ecc_vr adapt 3000 MODEL.WEIGHTS "$OUT/codec/model_final.pth" MODEL.ECCENTRIC.EDGE.WEIGHTS "$E" "$@" ;;
  joint)  # the same with the edge trunk and detector trained jointly (DISTILL.EDGE_LOSS_WEIGHT)
    train adaptive_ecc_vr joint 3000 MODEL.WEIGHTS "$OUT/codec/model_final.pth" MODEL.ECCENTRIC.EDGE.WEIGHTS "$E" \
      MODEL.ECCENTRIC.DISTILL.EDGE_LOSS_WEIGHT 0.5 MODEL.ECCENTRIC.DISTILL.FREEZE "[]" "$@" ;;
  cloud_plus)  # the cloud-only baseline at the split's budget: the teacher + the codec's and adaptation's iterations
    "$PY" tools/train_net.py --resume --config-file configs/FashionDet/cloud_teacher.yaml "${CURVE[@]}" \
      MODEL.WEIGHTS "$T" SOLVER.BASE_LR 0.01 SOLVER.WARMUP_ITERS 50 SOLVER.MAX_ITER 4000 TEST.EVAL_PERIOD 500 \
      SOLVER.CHECKPOINT_PERIOD 500 OUTPUT_DIR "$OUT/cloud_plus" "$@" ;;
  *) echo "unknown stage $stage (teacher edge codec adapt joint cloud_plus)" >&2; exit 2 ;;
esac
"$PY" tools/export_checkpoint.py "$OUT/$stage/model_final.pth" "$OUT/$stage.pth"
