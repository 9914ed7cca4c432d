#!/usr/bin/env bash
# Spark GPU discovery script (spark.executor.resource.gpu.discoveryScript): prints the GPUs of this machine
# as {"name": "gpu", "addresses": ["0", "1", ...]}. Respects CUDA_VISIBLE_DEVICES when it is set.
set -euo pipefail
if [[ -n "${CUDA_VISIBLE_DEVICES:-}" ]]; then
  IFS=',' read -ra ids <<< "${CUDA_VISIBLE_DEVICES}"
elif command -v nvidia-smi >/dev/null 2>&1; then
  mapfile -t ids < <(nvidia-smi --query-gpu=index --format=csv,noheader 2>/dev/null || true)
else
  ids=()
fi
out=""
for i in "${ids[@]}"; do
  i="${i//[[:space:]]/}"
  [[ -z "$i" ]] && continue
  out+="${out:+,}\"$i\""
done
echo "{\"name\": \"gpu\", \"addresses\": [${out}]}"
