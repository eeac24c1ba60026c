#!/usr/bin/env bash
# Codec v2 on FashionDet, the whole recipe: stage 1 pre-trains the variable-rate codec on feature reconstruction
# (cheap: no cloud tail), stage 2 adapts the cloud to it at every rate, then the committed checkpoint, the Dynamic
# ECC gate, and the rate sweep beside the image codecs.
#
#   bash tools/train_adaptive_ecc_vr.sh                 # this repository's 2-core CPU: about 45 minutes of training
#   DEVICE=cuda bash tools/train_adaptive_ecc_vr.sh     # one GPU: a few minutes
#
# Environment: DEVICE (cpu|cuda), OUT (training outputs), CKPT (where the exported checkpoints go), STAGE1_ITERS,
# STAGE2_ITERS, EVAL_IMAGES (images of the final sweep; 0 skips it), PY (the python to use).
set -euo pipefail
cd "$(dirname "$0")/.."
DEVICE=${DEVICE:-cpu}
OUT=${OUT:-output/fashion_det}
CKPT=${CKPT:-checkpoints/fashion_det}
PY=${PY:-python}
STAGE1_ITERS=${STAGE1_ITERS:-300}
STAGE2_ITERS=${STAGE2_ITERS:-900}
EVAL_IMAGES=${EVAL_IMAGES:-500}

stage() { echo "== $1 ($(date +%H:%M:%S))"; }
stage "1/5 codec pre-training on feature reconstruction"
$PY tools/train_net.py --config-file configs/FashionDet/codec_pretrain.yaml MODEL.DEVICE "$DEVICE" \
    SOLVER.MAX_ITER "$STAGE1_ITERS" OUTPUT_DIR "$OUT/codec_pretrain" DATASETS.TEST "()"
stage "2/5 knowledge adaptation at every rate"
$PY tools/train_net.py --config-file configs/FashionDet/adaptive_ecc_vr.yaml MODEL.DEVICE "$DEVICE" \
    MODEL.WEIGHTS "$OUT/codec_pretrain/model_final.pth" SOLVER.MAX_ITER "$STAGE2_ITERS" \
    OUTPUT_DIR "$OUT/adaptive_ecc_vr" DATASETS.TEST "()"
stage "3/5 export (fp16 weights: one checkpoint for every rate)"
$PY tools/export_checkpoint.py "$OUT/adaptive_ecc_vr/model_final.pth" "$CKPT/adaptive_ecc_vr.pth"
stage "4/5 Dynamic ECC gate (recall 0.9, 300 training images)"
$PY tools/fit_offload_gate.py --config-file configs/FashionDet/adaptive_ecc_vr.yaml \
    --weights "$CKPT/adaptive_ecc_vr.pth" --recall 0.9 --output "$CKPT/offload_gate_vr.pth" MODEL.DEVICE "$DEVICE"
if [ "$EVAL_IMAGES" -gt 0 ]; then
  stage "5/5 rate sweep beside the image codecs ($EVAL_IMAGES val images)"
  $PY tools/pareto.py --config-file configs/FashionDet/adaptive_ecc_vr.yaml --sweep rates=all \
      --max-images "$EVAL_IMAGES" --output "$OUT/pareto_vr" -- MODEL.DEVICE "$DEVICE"
fi
stage "done"
