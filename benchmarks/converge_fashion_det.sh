#!/usr/bin/env bash
# Train FashionDet's models to a plateau, one stage at a time, each with its learning curve on the held-out
# tenth of the training images (fashion_det_train_holdout; the stage trains on fashion_det_train_fit).
#   benchmarks/converge_fashion_det.sh STAGE [KEY VALUE ...]     STAGE: teacher | edge (in that order)
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
case "$stage" in
  teacher)
    "$PY" tools/train_net.py --resume --config-file configs/FashionDet/cloud_teacher.yaml "${CURVE[@]}" \
      SOLVER.MAX_ITER 4000 TEST.EVAL_PERIOD 500 SOLVER.CHECKPOINT_PERIOD 500 OUTPUT_DIR "$OUT/teacher" "$@" ;;
  edge)  # the quarter-width edge detector, distilled from the converged teacher
    "$PY" tools/train_net.py --resume --config-file configs/FashionDet/edge_kd.yaml "${CURVE[@]}" \
      MODEL.ECCENTRIC.DISTILL.TEACHER_WEIGHTS "$OUT/teacher.pth" \
      SOLVER.MAX_ITER 3000 TEST.EVAL_PERIOD 500 SOLVER.CHECKPOINT_PERIOD 500 OUTPUT_DIR "$OUT/edge" "$@" ;;
  *) echo "unknown stage $stage (teacher edge)" >&2; exit 2 ;;
esac
"$PY" tools/export_checkpoint.py "$OUT/$stage/model_final.pth" "$OUT/$stage.pth"
