#!/usr/bin/env bash
# Installs the independent WebSocket servers the interop tests talk to, at pinned versions,
# into folders of this repository (ignored by git). Needs python3 with pip, and node with npm.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
PYTHON_WEBSOCKETS=15.0.1
NODE_WS=8.18.0

if [ ! -d "$here/.python/websockets" ]; then
  python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --target "$here/.python" "websockets==$PYTHON_WEBSOCKETS"
fi
if [ ! -d "$here/.node/node_modules/ws" ]; then
  npm install --silent --no-audit --no-fund --prefix "$here/.node" "ws@$NODE_WS" > /dev/null
fi
echo "interop peers: python websockets $PYTHON_WEBSOCKETS, node ws $NODE_WS"
