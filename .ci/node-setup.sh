# Install the Node.js example's dependencies (examples/node-chatbot) exactly as locked.
#
# Run it (`sh .ci/node-setup.sh`) or source it from .ci/run; either way it changes nothing in the
# caller's shell. `npm ci` installs what package-lock.json pins and fails if the lock and
# package.json disagree; `npm install` is the fallback only when no lock exists. Without node/npm it
# says so and succeeds: tests/test_node_chatbot.py then skips with that reason.
(
    set -eu
    root=$(cd "$(dirname -- "${0:-.}")" 2>/dev/null && git rev-parse --show-toplevel 2>/dev/null || pwd)
    [ -d "$root/examples/node-chatbot" ] || root=$(pwd)
    dir="$root/examples/node-chatbot"
    if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
        echo "node-setup: node/npm not found; the Node.js chatbot test will be skipped" >&2
    elif [ -f "$dir/package-lock.json" ]; then
        echo "node-setup: npm ci in $dir (node $(node --version), npm $(npm --version))" >&2
        (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
    else
        echo "node-setup: no package-lock.json; npm install in $dir" >&2
        (cd "$dir" && npm install --no-audit --no-fund --loglevel=error)
    fi
)
