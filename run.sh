#!/usr/bin/env bash
# Run the pipeline stages in order, stopping at the first failure.
#   ./run.sh                 all stages
#   ./run.sh 04              stage 04 and every later stage
#   ./run.sh 03 --set features.als.factors=32 --config my.yaml --force
# Options after FROM are passed to every stage script (see any script's --help).
set -euo pipefail
cd "$(dirname "$0")"

if [[ -n "${PYTHON:-}" ]]; then py=$PYTHON
elif [[ -x .venv/bin/python ]]; then py=.venv/bin/python
else py=python3
fi

from=01
if [[ $# -gt 0 && $1 =~ ^0?[0-9]$ ]]; then
  from=$(printf "%02d" "$((10#$1))")
  shift
elif [[ $# -gt 0 && ( $1 == -h || $1 == --help ) ]]; then
  sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//'
  exit 0
fi

ran=0
for script in [0-9][0-9]_*.py; do
  n=${script:0:2}
  if (( 10#$n >= 10#$from )); then
    echo "=== $script" >&2
    "$py" "$script" "$@"
    ran=1
  fi
done
if (( ran == 0 )); then
  echo "run.sh: no stage script numbered $from or later" >&2
  exit 2
fi
