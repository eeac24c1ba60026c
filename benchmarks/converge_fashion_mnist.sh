#!/usr/bin/env bash
# The Fashion-MNIST classification chain, each training stage to its plateau (curve.json in its OUTPUT_DIR: top-1
# on the 5,000 held-out training images every epoch), its result copied to checkpoints/classification/.
#   benchmarks/converge_fashion_mnist.sh STAGE [KEY VALUE ...]
# STAGE: teacher | edge | joint | cloud_plus | dynamic | codecs | pareto | joint_stem | dynamic_stem | pareto_stem |
# all (in that order); adaptive (the frozen-edge variant of joint) on its own. The *_stem stages: the same joint
# adaptation split after the edge's stem (stride 2), its Dynamic ECC and its front with the image codecs.
# The chain with a real capacity gap (the 28x28 KD edge under the cloud on 56x56 inputs; the edge stage above gives
# its edge): teacher_56 | cloud_plus_56 | joint_stem_56 | joint_stem_56_nofm (the same without feature matching, rate
# weight 0.5) | joint_stem_56_rw07 (that at rate weight 0.7) | dynamic_stem_56 | dynamic_stem_56_nofm |
# dynamic_stem_56_rw07 | prior_stem_56_nofm (the rate-0.5 split's latent under a positional prior counted on its
# training images: tools/fit_symbol_prior.py) | codecs_56 | pareto_stem_56 | all_56 (in that order).
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
SPLIT_56=(MODEL.WEIGHTS "$C/fashion_mnist_cloud_teacher_56.pth" MODEL.ECCENTRIC.EDGE.WEIGHTS "$C/fashion_mnist_edge_kd.pth"
          MODEL.ECCENTRIC.DISTILL.TEACHER_WEIGHTS "$C/fashion_mnist_cloud_teacher_56.pth")
[ -z "${OUT:-}" ] || SPLIT_56+=(MODEL.ECCENTRIC.DISTILL.TEACHER_CONFIG "$O/fashion_mnist_cloud_teacher_56/config.yaml")
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
codecs() {  # teacher (its config and checkpoint share the name), equal-budget checkpoint: the image codecs to the
  local t="$1" w="$2" cfg="$1"  # equal-budget cloud, up to their lossless/top quality; PNG to the teacher too
  evaluate $cfg "$O/eval/${t#fashion_mnist_cloud_}_png" MODEL.WEIGHTS "$C/$t.pth"
  evaluate $cfg "$O/eval/$w/png" MODEL.WEIGHTS "$C/$w.pth"
  for q in 5 10 30 50 70 90 100; do
    evaluate $cfg "$O/eval/$w/jpeg_$q" MODEL.WEIGHTS "$C/$w.pth" MODEL.CLS.IMAGE_CODEC jpeg MODEL.CLS.IMAGE_QUALITY $q
  done
  for q in 10 50 90 101; do  # 101: lossless WebP
    evaluate $cfg "$O/eval/$w/webp_$q" MODEL.WEIGHTS "$C/$w.pth" MODEL.CLS.IMAGE_CODEC webp MODEL.CLS.IMAGE_QUALITY $q
  done
  for q in 10 30 60 90; do
    evaluate $cfg "$O/eval/$w/avif_$q" MODEL.WEIGHTS "$C/$w.pth" MODEL.CLS.IMAGE_CODEC avif MODEL.CLS.IMAGE_QUALITY $q
  done
}
split_points() {  # split config, its Dynamic ECC config, eval prefix: Dynamic ECC, Adaptive ECC, its edge alone
  local w="$1" dyn="$2" p="$3"
  evaluate $dyn "$O/eval/${p}_dynamic" MODEL.WEIGHTS "$C/$w.pth"
  for policy in always never; do
    evaluate $w "$O/eval/${p}_$policy" MODEL.WEIGHTS "$C/$w.pth" MODEL.ECCENTRIC.EDGE.WEIGHTS "" \
      MODEL.ECCENTRIC.OFFLOAD.POLICY $policy
  done
}
front() {  # output folder, evaluation folders...: the top-1 front with bootstrap intervals
  local out="$1"; shift
  "$PY" tools/pareto.py --dataset fashion_mnist_test --accuracy top1 --bootstrap 1000 --output "$out" --results "$@"
}
stage() {
  case "$1" in
    teacher) train fashion_mnist_cloud_teacher fashion_mnist_cloud_teacher ;;
    edge) train fashion_mnist_edge_kd fashion_mnist_edge_kd "${TEACHER[@]}" ;;
    adaptive) train fashion_mnist_adaptive_ecc fashion_mnist_adaptive_ecc "${SPLIT[@]}" ;;
    joint) train fashion_mnist_adaptive_ecc_joint fashion_mnist_adaptive_ecc_joint "${SPLIT[@]}" ;;
    cloud_plus) train fashion_mnist_cloud_teacher_plus fashion_mnist_cloud_teacher_plus MODEL.WEIGHTS "$C/fashion_mnist_cloud_teacher.pth" ;;
    dynamic)
      split_points fashion_mnist_adaptive_ecc_joint fashion_mnist_dynamic_ecc_joint joint
      evaluate fashion_mnist_edge_kd "$O/eval/edge_kd" MODEL.WEIGHTS "$C/fashion_mnist_edge_kd.pth" ;;
    codecs) codecs fashion_mnist_cloud_teacher fashion_mnist_cloud_teacher_plus ;;
    joint_stem) train fashion_mnist_adaptive_ecc_joint_stem fashion_mnist_adaptive_ecc_joint_stem "${SPLIT[@]}" ;;
    dynamic_stem) split_points fashion_mnist_adaptive_ecc_joint_stem fashion_mnist_dynamic_ecc_joint_stem stem ;;
    pareto_stem) front "$O/pareto_stem" "$O"/eval/fashion_mnist_cloud_teacher_plus/* "$O"/eval/stem_* "$O/eval/edge_kd" \
      "$O/eval/teacher_png" ;;
    pareto) front "$O/pareto" "$O"/eval/fashion_mnist_cloud_teacher_plus/* "$O"/eval/joint_* "$O/eval/edge_kd" \
      "$O/eval/teacher_png" ;;
    teacher_56) train fashion_mnist_cloud_teacher_56 fashion_mnist_cloud_teacher_56 ;;
    cloud_plus_56) train fashion_mnist_cloud_teacher_56_plus fashion_mnist_cloud_teacher_56_plus \
      MODEL.WEIGHTS "$C/fashion_mnist_cloud_teacher_56.pth" ;;
    joint_stem_56) train fashion_mnist_adaptive_ecc_joint_stem_56 fashion_mnist_adaptive_ecc_joint_stem_56 "${SPLIT_56[@]}" ;;
    joint_stem_56_nofm) train fashion_mnist_adaptive_ecc_joint_stem_56_nofm fashion_mnist_adaptive_ecc_joint_stem_56_nofm \
      "${SPLIT_56[@]}" ;;
    joint_stem_56_rw07) train fashion_mnist_adaptive_ecc_joint_stem_56_nofm_rw07 \
      fashion_mnist_adaptive_ecc_joint_stem_56_nofm_rw07 "${SPLIT_56[@]}" ;;
    dynamic_stem_56)
      split_points fashion_mnist_adaptive_ecc_joint_stem_56 fashion_mnist_dynamic_ecc_joint_stem_56 stem56
      evaluate fashion_mnist_edge_kd "$O/eval/edge_kd" MODEL.WEIGHTS "$C/fashion_mnist_edge_kd.pth" ;;
    dynamic_stem_56_nofm)
      split_points fashion_mnist_adaptive_ecc_joint_stem_56_nofm fashion_mnist_dynamic_ecc_joint_stem_56_nofm stem56nofm ;;
    prior_stem_56_nofm)  # the rate-0.5 split's latent under a positional prior counted on its training images
      w=fashion_mnist_adaptive_ecc_joint_stem_56_nofm; P=(MODEL.ECCENTRIC.CODEC.PRIOR_WEIGHTS "$C/${w}_prior.pth")
      "$PY" tools/fit_symbol_prior.py --config-file "$T/$w.yaml" --output "$C/${w}_prior.pth" MODEL.WEIGHTS "$C/$w.pth" \
        MODEL.ECCENTRIC.EDGE.WEIGHTS "" "${EXTRA[@]}"
      evaluate fashion_mnist_dynamic_ecc_joint_stem_56_nofm_prior "$O/eval/stem56nofmprior_dynamic" \
        MODEL.WEIGHTS "$C/$w.pth" "${P[@]}"
      evaluate ${w}_prior "$O/eval/stem56nofmprior_always" MODEL.WEIGHTS "$C/$w.pth" MODEL.ECCENTRIC.EDGE.WEIGHTS "" \
        MODEL.ECCENTRIC.OFFLOAD.POLICY always "${P[@]}" ;;
    dynamic_stem_56_rw07) split_points fashion_mnist_adaptive_ecc_joint_stem_56_nofm_rw07 \
      fashion_mnist_dynamic_ecc_joint_stem_56_nofm_rw07 stem56rw07 ;;
    codecs_56) codecs fashion_mnist_cloud_teacher_56 fashion_mnist_cloud_teacher_56_plus ;;
    pareto_stem_56) front "$O/pareto_stem_56" "$O"/eval/fashion_mnist_cloud_teacher_56_plus/* "$O"/eval/stem56_* \
      "$O"/eval/stem56nofm_* "$O"/eval/stem56rw07_* "$O"/eval/stem56nofmprior_* "$O/eval/edge_kd" \
      "$O/eval/teacher_56_png" ;;
    all) for s in teacher edge joint cloud_plus dynamic codecs pareto joint_stem dynamic_stem pareto_stem; do stage "$s"; done ;;
    all_56) for s in teacher_56 cloud_plus_56 joint_stem_56 joint_stem_56_nofm joint_stem_56_rw07 dynamic_stem_56 \
                     dynamic_stem_56_nofm dynamic_stem_56_rw07 prior_stem_56_nofm codecs_56 pareto_stem_56; do
                stage "$s"; done ;;
    *) echo "unknown stage $1 (teacher edge adaptive joint cloud_plus dynamic codecs pareto joint_stem dynamic_stem"\
            " pareto_stem all; teacher_56 cloud_plus_56 joint_stem_56 joint_stem_56_nofm joint_stem_56_rw07"\
            " dynamic_stem_56 dynamic_stem_56_nofm dynamic_stem_56_rw07 prior_stem_56_nofm codecs_56 pareto_stem_56"\
            " all_56)" >&2
       exit 2 ;;
  esac
}
stage "$1"
