#!/usr/bin/env bash
# The wheels ganlab needs beyond torch, torchvision and tensorboard, for a machine with no
# package index (an air-gapped GPU node, a cluster without internet), downloaded here:
#
#   scripts/offline_wheels.sh DIR [PYTHON_VERSION]      # default 3.12 (x86-64 Linux)
#
# then, on that machine (README: Offline and air-gapped machines):
#
#   pip install --no-index --no-deps --target /tmp/site DIR/*.whl && export PYTHONPATH=/tmp/site
#
# hydra-core, omegaconf and mlxtend ship pure-Python wheels (py3-none-any), so one set serves
# every platform; antlr4-python3-runtime 4.9.3 (the version hydra-core 1.3 pins) is published
# as an sdist only, so its wheel is built here. What they need besides (PyYAML, packaging,
# numpy, scipy, scikit-learn, pandas, matplotlib, joblib for mlxtend) is on most GPU images;
# `pip check` there names whatever is missing.
set -euo pipefail
dir=${1:?usage: scripts/offline_wheels.sh DIR [PYTHON_VERSION, default 3.12]}
py=${2:-3.12}
mkdir -p "$dir"
python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$py" \
    --platform manylinux2014_x86_64 -d "$dir" \
    hydra-core==1.3.2 omegaconf==2.3.0 mlxtend==0.23.4
python3 -m pip wheel -q --no-deps -w "$dir" antlr4-python3-runtime==4.9.3
ls "$dir"/*.whl
