#!/usr/bin/env bash
# Install PyTorch into the given Python environment, matched to the machine:
# the CUDA build where an NVIDIA GPU is present, the CPU build everywhere else,
# so a CPU-only machine never downloads gigabytes of CUDA libraries.
#
#   deploy/install-torch.sh .venv/bin/python
#
# GATEHOUSE_TORCH=cuda|cpu forces a flavour (image builds have no GPU to probe).
set -euo pipefail

python="${1:-python3}"
version="${TORCH_VERSION:-2.13.0}"
cpu_index="${TORCH_CPU_INDEX:-https://download.pytorch.org/whl/cpu}"

flavour="${GATEHOUSE_TORCH:-}"
if [ -z "$flavour" ]; then
    if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
        flavour=cuda
    else
        flavour=cpu
    fi
fi

installed=$("$python" -c 'import torch; print(torch.__version__)' 2>/dev/null || true)
case "$flavour:$installed" in
    cpu:"$version+cpu"|cuda:"$version"|cuda:"$version+cu"*)
        echo "torch $installed already installed ($flavour)"
        exit 0
        ;;
esac

echo "installing torch $version ($flavour build)"
if [ "$flavour" = cuda ]; then
    # The Linux wheel on the default index is the CUDA build.
    "$python" -m pip install "torch==$version"
else
    # A CPU wheel that pip can already see (a local wheel directory) wins; otherwise
    # take it from PyTorch's CPU index, with its pure-Python dependencies from the default one.
    "$python" -m pip install "torch==$version+cpu" 2>/dev/null \
        || "$python" -m pip install "torch==$version+cpu" --extra-index-url "$cpu_index"
    "$python" -c 'import torch, sys; sys.exit("a CUDA build of torch was installed on a CPU machine" if torch.version.cuda else 0)'
fi
