#!/usr/bin/env bash
# Train FashionDet's models to a plateau, one stage at a time, each with its learning curve on the held-out
# tenth of the training images (fashion_det_train_holdout; the stage trains on fashion_det_train_fit).
#   benchmarks/converge_fashion_det.sh STAGE [KEY VALUE ...]
# STAGE, in order: teacher, edge, codec, adapt (and joint), cloud_plus (the equal-budget cloud-only baseline), sc2bench;
# then gates (both gates and the region threshold, chosen on the held-out split) and the val measurements
# eval_codecs, eval_adapt, eval_dynamic (after gates), eval_independent, eval_joint (each its own lane) and eval_merge (pareto.json with 95% intervals).
# Each training stage's final weights are exported (fp16) to $OUT/<stage>.pth for the next stage.
# Resumable: run it again and Detectron2 resumes from OUTPUT_DIR's last checkpoint (--resume).
# CPU: one core per stage (OMP_NUM_THREADS=1). GPU: DEVICE=cuda benchmarks/converge_fashion_det.sh teacher
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PY:-.venv/bin/python}"
DEVICE="${DEVICE:-cpu}"
OUT="${OUT:-output/converge}"
SPLIT="${SPLIT:-res2}"  # the edge trunk's last stage (MODEL.ECCENTRIC.SPLIT_AT)
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
HOLDOUT="[['fashion_det_train_fit','subset','fashion_det_train','train',0.1],['fashion_det_train_holdout','subset','fashion_det_train','holdout',0.1]]"
CURVE=(DATASETS.REGISTER "$HOLDOUT" DATASETS.TRAIN "('fashion_det_train_fit',)" DATASETS.TEST "('fashion_det_train_holdout',)"
       MODEL.DEVICE "$DEVICE")
stage="$1"; shift
T="$OUT/teacher.pth"; E="$OUT/edge.pth"; A="${ADAPTED:-$OUT/adapt.pth}"  # ADAPTED=$OUT/joint.pth: gates over the joint model
REG=(DATASETS.REGISTER "$HOLDOUT" MODEL.DEVICE "$DEVICE")
VAL=(--dataset fashion_det_val --bootstrap "${BOOTSTRAP:-200}")
C=configs/FashionDet
threshold() { "$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["threshold"])' "$1"; }
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
  edge)  # the quarter-width edge detector, distilled from the converged teacher; exported: its trunk and detector
    train edge_kd edge 3000 MODEL.ECCENTRIC.SPLIT_AT "$SPLIT" "$@"
    trunk=(stem res2 res3 res4); keep=(edge_detector)
    for s in "${trunk[@]}"; do keep+=("backbone.bottom_up.$s"); [ "$s" = "$SPLIT" ] && break; done
    "$PY" tools/export_checkpoint.py "$OUT/edge/model_final.pth" "$E" --keep "${keep[@]}"
    exit 0 ;;
  codec)  # codec v2 pre-trained on reconstruction of the teacher's split feature
    train codec_pretrain codec 1000 MODEL.WEIGHTS "$T" MODEL.ECCENTRIC.EDGE.WEIGHTS "$E" "$@" ;;
  adapt)  # knowledge adaptation of the cloud tail and heads to the coded features (edge frozen)
    train adaptive_ecc_vr adapt 3000 MODEL.WEIGHTS "$OUT/codec/model_final.pth" MODEL.ECCENTRIC.EDGE.WEIGHTS "$E" "$@" ;;
  joint)  # the same with the edge trunk and detector trained jointly (DISTILL.EDGE_LOSS_WEIGHT)
    train adaptive_ecc_vr joint 3000 MODEL.WEIGHTS "$OUT/codec/model_final.pth" MODEL.ECCENTRIC.EDGE.WEIGHTS "$E" \
      MODEL.ECCENTRIC.DISTILL.EDGE_LOSS_WEIGHT 0.5 MODEL.ECCENTRIC.DISTILL.FREEZE "[]" "$@" ;;
  sc2bench)  # sc2bench's entropic student from the teacher at the split's budget (500 distillation + 3,000 detection
             # iterations, batch 6), stage 2's curve on the held-out split; LAMBDA: its rate weight (default 0.5)
    lam="${LAMBDA:-0.5}"
    "$PY" tools/train_sc2bench.py --config-file configs/FashionDet/cloud_teacher.yaml --rate-weight "$lam" \
      --stage1-lr 5e-3 --iters 500 3000 --eval-period 500 --curve-dir "$OUT/sc2bench_$lam" \
      --output "$OUT/sc2bench_$lam.pth" "${CURVE[@]}" MODEL.WEIGHTS "$T" SOLVER.BASE_LR 0.01 SOLVER.WARMUP_ITERS 50 "$@"
    exit 0 ;;
  cloud_plus)  # the cloud-only baseline at the split's budget: the teacher + the codec's and adaptation's iterations
    "$PY" tools/train_net.py --resume --config-file configs/FashionDet/cloud_teacher.yaml "${CURVE[@]}" \
      MODEL.WEIGHTS "$T" SOLVER.BASE_LR 0.01 SOLVER.WARMUP_ITERS 50 SOLVER.MAX_ITER 4000 TEST.EVAL_PERIOD 500 \
      SOLVER.CHECKPOINT_PERIOD 500 OUTPUT_DIR "$OUT/cloud_plus" "$@" ;;
  gates)  # the image-level gate (recall 0.9) and the region gate fitted on the held-out split; the region threshold
           # the cheapest whose held-out AP stays within 1 of sending every tile at <= 1/2 its bytes and cloud GFLOPs.
           # (tools/fit_offload_gate.py fits on the edge $A holds); KEY VALUE overrides go to the gate fits
    mkdir -p "$OUT/gates"
    "$PY" tools/fit_offload_gate.py --config-file $C/dynamic_ecc_vr.yaml --weights "$A" --dataset \
      fashion_det_train_holdout --max-images 1000 --recall 0.9 --output "$OUT/offload_gate.pth" \
      --fit-json "$OUT/gates/offload_gate.json" "${REG[@]}" "$@" > "$OUT/gates/offload_gate.log" 2>&1
    "$PY" tools/fit_offload_gate.py --regions --config-file $C/dynamic_region_ecc.yaml --weights "$A" --dataset \
      fashion_det_train_holdout --max-images 1000 --recall 0.9 --output "$OUT/region_gate.pth" \
      --fit-json "$OUT/gates/region_gate.json" "${REG[@]}" "$@" > "$OUT/gates/region_gate.log" 2>&1
    "$PY" tools/pareto.py --config-file $C/dynamic_region_ecc.yaml --dataset fashion_det_train_holdout \
      --sweep thresholds=0,0.4,0.5,0.6,0.7,0.8 --output "$OUT/gates/holdout_regions" -- "${REG[@]}" \
      MODEL.WEIGHTS "$A" MODEL.ECCENTRIC.EDGE.WEIGHTS "$OUT/region_gate.pth"
    "$PY" tools/select_point.py --pareto "$OUT/gates/holdout_regions/pareto.json" --series "Dynamic ECC (regions)" \
      --reference "threshold 0" --output "$OUT/gates/region_threshold.json"
    exit 0 ;;
  eval_codecs)  # the equal-budget cloud (cloud_plus) on images coded up to each codec's top quality, and the teacher
    "$PY" tools/pareto.py --config-file $C/adaptive_ecc_vr.yaml --sweep jpeg=5,10,20,30,50,90,100 \
      webp=5,10,30,50,80,101 avif=10,30,50,70 png=9 --cloud-config $C/cloud_teacher.yaml --cloud-weights \
      "$OUT/cloud_plus.pth" "${VAL[@]}" --output "$OUT/eval/codecs" -- MODEL.DEVICE "$DEVICE"
    exit 0 ;;
  eval_adapt)  # Adaptive ECC at every rate and the edge alone on val
    "$PY" tools/pareto.py --config-file $C/adaptive_ecc_vr.yaml --sweep rates=all edge_only "${VAL[@]}" \
      --output "$OUT/eval/adapt" -- MODEL.WEIGHTS "$A" MODEL.ECCENTRIC.EDGE.WEIGHTS "" MODEL.DEVICE "$DEVICE"
    exit 0 ;;
  eval_dynamic)  # Dynamic ECC on val with the image gate and the region gate at their held-out thresholds
    "$PY" tools/pareto.py --config-file $C/dynamic_ecc_vr.yaml --sweep \
      "thresholds=$(threshold "$OUT/gates/offload_gate.json")" "${VAL[@]}" \
      --output "$OUT/eval/dynamic" -- MODEL.WEIGHTS "$A" MODEL.ECCENTRIC.EDGE.WEIGHTS "$OUT/offload_gate.pth" \
      MODEL.DEVICE "$DEVICE"
    "$PY" tools/pareto.py --config-file $C/dynamic_region_ecc.yaml --sweep \
      "thresholds=$(threshold "$OUT/gates/region_threshold.json")" "${VAL[@]}" --output "$OUT/eval/regions" -- \
      MODEL.WEIGHTS "$A" MODEL.ECCENTRIC.EDGE.WEIGHTS "$OUT/region_gate.pth" MODEL.DEVICE "$DEVICE"
    exit 0 ;;
  eval_independent)  # Independent ECC: the edge detector, JPEG q90 of the images it does not answer to the teacher
    "$PY" tools/pareto.py --config-file $C/independent_ecc.yaml --independent-config $C/independent_ecc.yaml \
      --sweep independent=90 "${VAL[@]}" --output "$OUT/eval/independent" -- MODEL.WEIGHTS "$T" \
      MODEL.ECCENTRIC.EDGE.WEIGHTS "$E" MODEL.DEVICE "$DEVICE"
    exit 0 ;;
  eval_joint)  # jointly adapted Adaptive ECC at every rate and its edge alone
    "$PY" tools/pareto.py --config-file $C/adaptive_ecc_vr.yaml --sweep rates=all edge_only "${VAL[@]}" \
      --output "$OUT/eval/joint" -- MODEL.WEIGHTS "$OUT/joint.pth" MODEL.ECCENTRIC.EDGE.WEIGHTS "" MODEL.DEVICE "$DEVICE"
    exit 0 ;;
  eval_merge)  # one front of everything measured on val; each split model's series tagged (frozen edge, joint,
               # each ablation) so that two models' sweeps stay two curves
    dirs=()
    for d in "$OUT"/eval/*/; do
      case "$(basename "$d")" in all*) ;; *joint*) dirs+=("joint=$d") ;; adapt|dynamic|regions) dirs+=("frozen edge=$d") ;;
        *) dirs+=("$d") ;; esac
    done
    for d in "$OUT"/ablate_*/eval/; do
      if [ -f "$d/pareto.json" ]; then dirs+=("ablation $(basename "$(dirname "$d")" | sed 's/^ablate_//')=$d"); fi
    done
    "$PY" tools/pareto.py --dataset fashion_det_val --results "${dirs[@]}" --output "$OUT/eval/all"
    exit 0 ;;
  *) echo "unknown stage $stage (teacher edge codec adapt joint cloud_plus sc2bench gates eval_codecs eval_adapt" \
          "eval_dynamic eval_independent eval_joint eval_merge)" >&2; exit 2 ;;
esac
"$PY" tools/export_checkpoint.py "$OUT/$stage/model_final.pth" "$OUT/$stage.pth"
