#!/usr/bin/env bash
# Re-run the README's FashionDet results table with the committed checkpoints (two lanes, one thread each):
#   bash benchmarks/remeasure_results.sh     (about 10 minutes on 2 cores; results in output/remeasure/)
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1
T="timeout 3000 .venv/bin/python tools/train_net.py --eval-only --config-file configs/FashionDet"
C=checkpoints/fashion_det; O=output/remeasure
lane1() {
  $T/cloud_teacher.yaml MODEL.WEIGHTS $C/cloud_teacher.pth OUTPUT_DIR $O/cloud_teacher > $O/cloud_teacher.log 2>&1
  $T/adaptive_ecc.yaml MODEL.WEIGHTS $C/adaptive_ecc.pth MODEL.ECCENTRIC.EDGE.WEIGHTS "" OUTPUT_DIR $O/adaptive > $O/adaptive.log 2>&1
  $T/adaptive_ecc.yaml MODEL.WEIGHTS $C/adaptive_ecc_lambda1.pth MODEL.ECCENTRIC.EDGE.WEIGHTS "" OUTPUT_DIR $O/adaptive_l1 > $O/adaptive_l1.log 2>&1
  $T/adaptive_ecc.yaml MODEL.WEIGHTS $C/adaptive_ecc_lambda2.pth MODEL.ECCENTRIC.EDGE.WEIGHTS "" OUTPUT_DIR $O/adaptive_l2 > $O/adaptive_l2.log 2>&1
  $T/adaptive_ecc.yaml MODEL.WEIGHTS $C/adaptive_ecc.pth MODEL.ECCENTRIC.EDGE.WEIGHTS "" MODEL.ECCENTRIC.OFFLOAD.POLICY never OUTPUT_DIR $O/edge_only > $O/edge_only.log 2>&1
}
lane2() {
  $T/independent_ecc.yaml OUTPUT_DIR $O/independent > $O/independent.log 2>&1
  $T/dynamic_ecc.yaml OUTPUT_DIR $O/dynamic > $O/dynamic.log 2>&1
  $T/dynamic_ecc.yaml MODEL.ECCENTRIC.OFFLOAD.THRESHOLD 0.5 OUTPUT_DIR $O/dynamic_05 > $O/dynamic_05.log 2>&1
  $T/independent_ecc.yaml MODEL.ECCENTRIC.OFFLOAD.POLICY dynamic MODEL.ECCENTRIC.OFFLOAD.THRESHOLD 0.3 OUTPUT_DIR $O/independent_dyn > $O/independent_dyn.log 2>&1
}
mkdir -p $O
lane1 & lane2 & wait
.venv/bin/python - <<'PY'
import json, glob, os
for d in sorted(glob.glob("output/remeasure/*/eccentric_metrics.json")):
    m = json.load(open(d))["metrics"]
    print(f"{d.split('/')[2]:16s} AP {m.get('AP', float('nan')):.2f} AP50 {m.get('AP50', float('nan')):.2f} bytes {m.get('bytes_mean', 0):,.0f} p95 {m.get('bytes_p95', 0):,.0f} off {m.get('offload_rate', 1):.3f} edge {m.get('edge_gflops', 0):.2f} cloud {m.get('cloud_gflops', 0):.2f}")
PY
echo ALLDONE
