#!/usr/bin/env bash
# Sets up what tests/reference/official_parity.py needs: a Python venv with the library versions
# the official ReDiff code was written for (its requirements.txt: transformers 4.40, pillow 10.3,
# numpy 1.26, accelerate 0.29; CPU is enough) and a checkout of the official code at the commit
# the fixtures were recorded with. Everything lands under target/reference/ (git-ignored).
#
#   bash tests/reference/setup_official.sh [PATH_TO_EXISTING_REDIFF_CHECKOUT]
set -euo pipefail
cd "$(dirname "$0")/../.."
dest=target/reference
mkdir -p "$dest"
if [ ! -x "$dest/venv/bin/python" ]; then
  python3 -m venv "$dest/venv"
  "$dest/venv/bin/pip" install -q "torch==2.3.1" "transformers==4.40.0" "tokenizers==0.19.1" \
    "accelerate==0.29.3" "numpy==1.26.4" "pillow==10.3.0" "einops==0.6.1" safetensors \
    "datasets<2.20" "huggingface-hub<0.24" "tyro<0.9" pyyaml   # imported by train.py (official_loader.py)
fi
if [ ! -d "$dest/ReDiff/train/llava" ]; then
  src=${1:-https://github.com/jiyt17/ReDiff}
  git clone -q "$src" "$dest/ReDiff"
  git -C "$dest/ReDiff" checkout -q 52604ca
fi
echo "ready: $dest/venv/bin/python tests/reference/official_parity.py --official $dest/ReDiff"
echo "       $dest/venv/bin/python tests/reference/official_loader.py --official $dest/ReDiff"
