#!/usr/bin/env bash
# Everything the CPU machines train for hours, on a lent GPU in one command (the device tool's 15 minutes):
#   bash benchmarks/gpu_all.sh [det|ablate|cls ...]      (default: det ablate cls; $OUT/gpu_all.log says where it is)
# det: benchmarks/converge_fashion_det.sh's chain (teacher, edge, codec, adapt, joint, cloud_plus, sc2bench, gates,
# val measurements); ablate: benchmarks/ablate_fashion_det.sh's five (teacher_wide_joint: the shipped teacher-trunk
# split); cls: benchmarks/converge_fashion_mnist.sh all (under $OUT too, beside the committed chain).
# Each finished stage is skipped on a re-run (its exported .pth exists), so a cut-off run continues where it stopped.
set -uo pipefail
cd "$(dirname "$0")/.."
export DEVICE=cuda OMP_NUM_THREADS=4 OUT="${OUT:-output/gpu}"
mkdir -p "$OUT"
log() { echo "[$(date +%T)] $*" | tee -a "$OUT/gpu_all.log"; }
det() {
  for s in teacher edge codec adapt cloud_plus joint; do
    [ -f "$OUT/$s.pth" ] && continue
    log "det $s"; bash benchmarks/converge_fashion_det.sh "$s" SOLVER.MAX_ITER "$(iters "$s")" || return 1
  done
  [ -f "$OUT/sc2bench_0.5.pth" ] || { log "det sc2bench"; bash benchmarks/converge_fashion_det.sh sc2bench || return 1; }
  for s in gates eval_codecs eval_adapt eval_dynamic eval_independent eval_joint eval_merge; do log "det $s"; bash benchmarks/converge_fashion_det.sh "$s"; done
}
iters() { case "$1" in teacher) echo 8000 ;; edge) echo 3000 ;; codec) echo 500 ;; adapt|joint) echo 3000 ;;
          cloud_plus) echo 3500 ;; esac; }
ablate() { for a in teacher_wide_joint teacher_trunk wide_latent near_lossless res3; do log "ablate $a"; bash benchmarks/ablate_fashion_det.sh "$a"; done; }
cls() { log "cls all"; bash benchmarks/converge_fashion_mnist.sh all; }  # OUT=$OUT: beside the committed chain
for what in "${@:-det ablate cls}"; do for w in $what; do "$w" || log "$w stopped"; done; done
log done
