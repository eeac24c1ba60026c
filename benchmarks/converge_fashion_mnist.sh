#!/usr/bin/env bash
# The Fashion-MNIST classification chain, each training stage to its plateau (curve.json in its OUTPUT_DIR: top-1
# on the 5,000 held-out training images every epoch), its result copied to checkpoints/classification/.
#   benchmarks/converge_fashion_mnist.sh STAGE [KEY VALUE ...]
# STAGE: teacher | edge | joint | cloud_plus | dynamic | codecs | pareto | joint_stem | dynamic_stem | pareto_stem |
# all (in that order); adaptive (the frozen-edge variant of joint) on its own. The *_stem stages: the same joint
# adaptation split after the edge's stem (stride 2), its Dynamic ECC and its front with the image codecs.
# KEY VALUE overrides go to every stage's training and evaluation (e.g. MODEL.CLS.IMAGE_SIZE 56 for a whole chain
# at 56x56). OUT=DIR trains another chain beside the committed one: every stage's OUTPUT_DIR and checkpoint under
# DIR, each stage on the ones before it there, the teacher for distillation as its OUTPUT_DIR/config.yaml records it.
# Resumable (--resume from OUTPUT_DIR/last_checkpoint.pth). CPU: one core (OMP_NUM_THREADS=1);
# GPU: DEVICE=cuda benchmarks/converge_fashion_mnist.sh all
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PY:-.venv/bin/python}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
DEV=(MODEL.DEVICE "${DEVICE:-cpu}")
T=configs/Classification; C="${OUT:-checkpoints/classification}"; O="${OUT:-output/classification}"
EXTRA=("${@:2}")
TEACHER=(MODEL.ECCENTRIC.DISTILL.TEACHER_WEIGHTS "$C/fashion_mnist_cloud_teacher.pth")
[ -z "${OUT:-}" ] || TEACHER+=(MODEL.ECCENTRIC.DISTILL.TEACHER_CONFIG "$O/fashion_mnist_cloud_teacher/config.yaml")
SPLIT=(MODEL.WEIGHTS "$C/fashion_mnist_cloud_teacher.pth" MODEL.ECCENTRIC.EDGE.WEIGHTS "$C/fashion_mnist_edge_kd.pth"
       "${TEACHER[@]}")  # a split's starting point: the teacher's cloud, the KD edge
train() {  # config name, checkpoint name, overrides... (a finished run, OUTPUT_DIR/model_final.pth, is kept)
  local name="$1" ckpt="$2"; shift 2
  [ -f "$O/$name/model_final.pth" ] || "$PY" tools/train_cls.py --resume --config-file "$T/$name.yaml" "${DEV[@]}" \
    OUTPUT_DIR "$O/$name" "$@" "${EXTRA[@]}"
  cp "$O/$name/model_final.pth" "$C/$ckpt.pth"  # already float16 (classification's save_weights)
}
evaluate() {  # config name, output folder, overrides...
  local name="$1" out="$2"; shift 2
  "$PY" tools/train_cls.py --eval-only --config-file "$T/$name.yaml" "${DEV[@]}" OUTPUT_DIR "$out" "$@" "${EXTRA[@]}"
}
stage() {
  case "$1" in
    teacher) train fashion_mnist_cloud_teacher fashion_mnist_cloud_teacher ;;
    edge) train fashion_mnist_edge_kd fashion_mnist_edge_kd "${TEACHER[@]}" ;;
    adaptive) train fashion_mnist_adaptive_ecc fashion_mnist_adaptive_ecc "${SPLIT[@]}" ;;
    joint) train fashion_mnist_adaptive_ecc_joint fashion_mnist_adaptive_ecc_joint "${SPLIT[@]}" ;;
    cloud_plus) train fashion_mnist_cloud_teacher_plus fashion_mnist_cloud_teacher_plus MODEL.WEIGHTS "$C/fashion_mnist_cloud_teacher.pth" ;;
    dynamic)
      evaluate fashion_mnist_dynamic_ecc_joint "$O/eval/dynamic_joint" MODEL.WEIGHTS "$C/fashion_mnist_adaptive_ecc_joint.pth"
      evaluate fashion_mnist_adaptive_ecc_joint "$O/eval/adaptive_joint" MODEL.WEIGHTS "$C/fashion_mnist_adaptive_ecc_joint.pth" \
        MODEL.ECCENTRIC.EDGE.WEIGHTS "" MODEL.ECCENTRIC.OFFLOAD.POLICY always
      evaluate fashion_mnist_adaptive_ecc_joint "$O/eval/edge_joint" MODEL.WEIGHTS "$C/fashion_mnist_adaptive_ecc_joint.pth" \
        MODEL.ECCENTRIC.EDGE.WEIGHTS "" MODEL.ECCENTRIC.OFFLOAD.POLICY never
      evaluate fashion_mnist_edge_kd "$O/eval/edge_kd" MODEL.WEIGHTS "$C/fashion_mnist_edge_kd.pth" ;;
    codecs)  # the image codecs to the equal-budget cloud, up to their lossless/top quality; PNG to the teacher too
      evaluate fashion_mnist_cloud_teacher "$O/eval/teacher_png" MODEL.WEIGHTS "$C/fashion_mnist_cloud_teacher.pth"
      w=fashion_mnist_cloud_teacher_plus
      evaluate fashion_mnist_cloud_teacher "$O/eval/$w/png" MODEL.WEIGHTS "$C/$w.pth"
      for q in 5 10 30 50 70 90 100; do
        evaluate fashion_mnist_cloud_teacher "$O/eval/$w/jpeg_$q" MODEL.WEIGHTS "$C/$w.pth" MODEL.CLS.IMAGE_CODEC jpeg MODEL.CLS.IMAGE_QUALITY $q
      done
      for q in 10 50 90 101; do  # 101: lossless WebP
        evaluate fashion_mnist_cloud_teacher "$O/eval/$w/webp_$q" MODEL.WEIGHTS "$C/$w.pth" MODEL.CLS.IMAGE_CODEC webp MODEL.CLS.IMAGE_QUALITY $q
      done
      for q in 10 30 60 90; do
        evaluate fashion_mnist_cloud_teacher "$O/eval/$w/avif_$q" MODEL.WEIGHTS "$C/$w.pth" MODEL.CLS.IMAGE_CODEC avif MODEL.CLS.IMAGE_QUALITY $q
      done ;;
    joint_stem) train fashion_mnist_adaptive_ecc_joint_stem fashion_mnist_adaptive_ecc_joint_stem "${SPLIT[@]}" ;;
    dynamic_stem)
      w=fashion_mnist_adaptive_ecc_joint_stem
      evaluate fashion_mnist_dynamic_ecc_joint_stem "$O/eval/stem_dynamic" MODEL.WEIGHTS "$C/$w.pth"
      evaluate $w "$O/eval/stem_always" MODEL.WEIGHTS "$C/$w.pth" MODEL.ECCENTRIC.EDGE.WEIGHTS "" \
        MODEL.ECCENTRIC.OFFLOAD.POLICY always
      evaluate $w "$O/eval/stem_never" MODEL.WEIGHTS "$C/$w.pth" MODEL.ECCENTRIC.EDGE.WEIGHTS "" \
        MODEL.ECCENTRIC.OFFLOAD.POLICY never ;;
    pareto_stem)
      "$PY" tools/pareto.py --dataset fashion_mnist_test --accuracy top1 --bootstrap 1000 --output "$O/pareto_stem" \
        --results "$O"/eval/fashion_mnist_cloud_teacher_plus/* "$O"/eval/stem_* "$O/eval/edge_kd" "$O/eval/teacher_png" ;;
    pareto)
      "$PY" tools/pareto.py --dataset fashion_mnist_test --accuracy top1 --bootstrap 1000 --output "$O/pareto" \
        --results "$O"/eval/fashion_mnist_cloud_teacher_plus/* "$O/eval/dynamic_joint" "$O/eval/adaptive_joint" \
        "$O/eval/edge_joint" "$O/eval/edge_kd" "$O/eval/teacher_png" ;;
    all) for s in teacher edge joint cloud_plus dynamic codecs pareto joint_stem dynamic_stem pareto_stem; do stage "$s"; done ;;
    *) echo "unknown stage $1 (teacher edge adaptive joint cloud_plus dynamic codecs pareto joint_stem dynamic_stem"\
                          " pareto_stem all)" >&2; exit 2 ;;
  esac
}
stage "$1"
