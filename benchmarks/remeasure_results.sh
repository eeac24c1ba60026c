#!/usr/bin/env bash
# Re-measure the README's FashionDet results table with the committed checkpoints of the rebuilt chain (two lanes,
# one thread each; DEVICE=cuda on a GPU), every row on all 500 fashion_det_val images:
#   bash benchmarks/remeasure_results.sh          (results in output/remeasure/, the table printed at the end)
# Rows: the cloud teacher on PNG (cloud_teacher.pth), the edge alone and Adaptive ECC codec v2 at rates 0-4
# (adaptive_ecc_vr.yaml: adaptive_ecc_vr.pth, the edge of edge_kd.pth), Dynamic ECC at the config's threshold (fitted on
# held-out training images; dynamic_ecc_vr.yaml: offload_gate_vr.pth), region-level Dynamic ECC at the config's
# threshold (chosen on held-out training images; dynamic_region_ecc.yaml: region_gate_vr.pth), Independent ECC, JPEG
# q90 (independent_ecc.yaml: cloud_teacher.pth + edge_kd.pth), Adaptive ECC on the teacher's trunk at rates 0-4
# (adaptive_ecc_vr_teacher_trunk.yaml: adaptive_ecc_vr_teacher_trunk.pth) and its equal-budget cloud (cloud_plus_4500.pth,
# committed) on PNG, JPEG q90, WebP q80 and AVIF q80; the same split and cloud rebuilt on the teacher trained 8,000
# iterations (adaptive_ecc_vr_teacher_trunk_8000.yaml; cloud_8000_plus_4500.pth), that teacher on PNG
# (cloud_teacher_8000.pth), and the quarter-width chain rebuilt on it: Adaptive ECC at rates 0-4 and its edge alone
# (adaptive_ecc_vr_joint_8000.yaml), Dynamic ECC and region-level Dynamic ECC over it (dynamic_ecc_vr_joint_8000.yaml,
# dynamic_region_ecc_joint_8000.yaml). The chain's cloud-only rows at its budget (cloud_plus:
# the teacher + the codec's and adaptation's iterations) need its weights, which are not committed: CLOUD_PLUS=FILE
# (default output/converge/cloud_plus.pth, from benchmarks/converge_fashion_det.sh cloud_plus) adds them when the
# file exists. AP intervals: 95% over the images, BOOTSTRAP resamples (default 1000).
set -uo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
PY="${PY:-.venv/bin/python}"
DEV=(MODEL.DEVICE "${DEVICE:-cpu}")
CLOUD_PLUS="${CLOUD_PLUS:-output/converge/cloud_plus.pth}"
C=configs/FashionDet; K=checkpoints/fashion_det; O=output/remeasure
T="timeout 6000 $PY tools/train_net.py --eval-only --config-file $C"
P="timeout 12000 $PY tools/pareto.py --dataset fashion_det_val"
lane1() {
  $P --config-file $C/adaptive_ecc_vr.yaml --sweep rates=all edge_only --output $O/adaptive -- "${DEV[@]}" \
    > $O/adaptive.log 2>&1
  $P --config-file $C/adaptive_ecc_vr.yaml --sweep png=9 --cloud-config $C/cloud_teacher.yaml \
    --cloud-weights $K/cloud_teacher.pth --output $O/teacher_png -- "${DEV[@]}" > $O/teacher_png.log 2>&1
  $P --config-file $C/adaptive_ecc_vr_teacher_trunk_8000.yaml --sweep rates=all --output $O/teacher_trunk_8000 -- \
    "${DEV[@]}" > $O/teacher_trunk_8000.log 2>&1
  $P --config-file $C/adaptive_ecc_vr.yaml --sweep png=9 --cloud-config $C/cloud_teacher.yaml \
    --cloud-weights $K/cloud_teacher_8000.pth --output $O/teacher_8000_png -- "${DEV[@]}" > $O/teacher_8000_png.log 2>&1
  $P --config-file $C/adaptive_ecc_vr.yaml --sweep png=9 jpeg=90 webp=80 avif=80 --cloud-config $C/cloud_teacher.yaml \
    --cloud-weights $K/cloud_8000_plus_4500.pth --output $O/cloud_8000_plus_4500 -- "${DEV[@]}" \
    > $O/cloud_8000_plus_4500.log 2>&1
}
lane2() {
  $T/dynamic_ecc_vr.yaml "${DEV[@]}" OUTPUT_DIR $O/dynamic > $O/dynamic.log 2>&1
  $T/dynamic_region_ecc.yaml "${DEV[@]}" OUTPUT_DIR $O/regions > $O/regions.log 2>&1
  $T/independent_ecc.yaml "${DEV[@]}" OUTPUT_DIR $O/independent > $O/independent.log 2>&1
  $P --config-file $C/adaptive_ecc_vr_teacher_trunk.yaml --sweep rates=all --output $O/teacher_trunk -- "${DEV[@]}" \
    > $O/teacher_trunk.log 2>&1
  $P --config-file $C/adaptive_ecc_vr.yaml --sweep png=9 jpeg=90 webp=80 avif=80 --cloud-config $C/cloud_teacher.yaml \
    --cloud-weights $K/cloud_plus_4500.pth --output $O/cloud_plus_4500 -- "${DEV[@]}" > $O/cloud_plus_4500.log 2>&1
  $P --config-file $C/adaptive_ecc_vr_joint_8000.yaml --sweep rates=all edge_only --output $O/joint_8000 -- \
    "${DEV[@]}" > $O/joint_8000.log 2>&1
  $T/dynamic_ecc_vr_joint_8000.yaml "${DEV[@]}" OUTPUT_DIR $O/dynamic_joint_8000 > $O/dynamic_joint_8000.log 2>&1
  $T/dynamic_region_ecc_joint_8000.yaml "${DEV[@]}" OUTPUT_DIR $O/regions_joint_8000 > $O/regions_joint_8000.log 2>&1
}
lane3() {  # the equal-budget cloud on PNG and across JPEG's and WebP's qualities (the README keeps the best points)
  $P --config-file $C/adaptive_ecc_vr.yaml --sweep png=9 jpeg=5,10,20,30,50,70,90,95,100 webp=5,10,30,50,80,101 \
    --cloud-config $C/cloud_teacher.yaml --cloud-weights "$CLOUD_PLUS" --output $O/cloud_plus -- "${DEV[@]}" \
    > $O/cloud_plus.log 2>&1
}
mkdir -p $O
results=($O/teacher_png $O/adaptive $O/dynamic $O/regions $O/independent $O/teacher_trunk $O/cloud_plus_4500
         $O/teacher_trunk_8000 $O/teacher_8000_png $O/cloud_8000_plus_4500 $O/joint_8000 $O/dynamic_joint_8000
         $O/regions_joint_8000)
if [ -f "$CLOUD_PLUS" ]; then
  results+=($O/cloud_plus)
  { lane1; lane3; } & lane2 & wait
else
  echo "no $CLOUD_PLUS: the cloud_plus rows are skipped" >&2
  lane1 & lane2 & wait
fi
$P --results "${results[@]}" --bootstrap "${BOOTSTRAP:-1000}" --output $O/all > $O/all.log 2>&1 \
  || { echo "merging failed: see $O/all.log (and the lanes' logs in $O/)" >&2; exit 1; }
"$PY" - "$O/all/pareto.json" <<'PY'
import json, os, sys
res = json.load(open(sys.argv[1]))
print(f"{res['dataset']}, {res['images']} images")
print("| run | series | point | AP [95% interval] | bytes/image mean (p95) | offloaded | edge GFLOPs | cloud GFLOPs |")
print("|---|---|---|---|---|---|---|---|")
for p in res["points"]:
    m = p["metrics"]
    lo, hi = m.get("AP_ci95", [float("nan")] * 2)
    run = os.path.relpath(p.get("output_dir", "?"), "output/remeasure").split(os.sep)[0]  # teacher_png, cloud_plus, ...
    print(f"| {run} | {p['series']} | {p['label']} | {m.get('AP', float('nan')):.2f} [{lo:.2f}, {hi:.2f}] | "
          f"{m.get('bytes_mean', 0):,.0f} ({m.get('bytes_p95', 0):,.0f}) | {100 * m.get('offload_rate', 1):.1f}% | "
          f"{m.get('edge_gflops', 0):.3f} | {m.get('cloud_gflops', 0):.3f} |")
PY
echo ALLDONE
