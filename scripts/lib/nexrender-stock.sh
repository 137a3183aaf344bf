# Sourced by scripts/cloudflare-conformance and scripts/spin-conformance: runs the stock nexrender
# clients' tests (tests/nexrender) against a server the caller starts, once per settings set.
# Needs ROOT, WORK, B, SECRET, EDGEFARM_CACHE and NEXRENDER_BODY_BYTES (the body limit the
# caller's server runs with) set, and node/npm on PATH.
# shellcheck shell=bash

# The nexrender settings (timeout ms, ordering) the tests in tests/nexrender run with: each test
# needs the server to run with exactly the settings it would start `edgefarm serve` with, and
# skips itself by name against any other (helpers.js), so the server is started once per set.
NEXRENDER_SETTINGS=("600000 oldest-first" "600000 newest-first" "600000 priority" "600000 random"
  "1500 oldest-first")

nexrender_stock_clients() { # label start-fn stop-fn: the stock @nexrender/api and @nexrender/worker
  local label=$1 start=$2 stop=$3
  echo "== stock nexrender clients (tests/nexrender) through $label"
  local t0=$SECONDS dir="$ROOT/tests/nexrender"
  # As tests/nexrender.rs: `npm ci` when node_modules is missing or older than the lock file.
  local marker="$dir/node_modules/.package-lock.json"
  if [ ! -f "$marker" ] || [ "$marker" -ot "$dir/package-lock.json" ]; then
    (cd "$dir" && npm ci --no-audit --no-fund --cache "$EDGEFARM_CACHE/npm") >"$WORK/npm.log" 2>&1 ||
      { tail -20 "$WORK/npm.log"; exit 1; }
  fi
  local i=0 settings timeout ordering tap rc
  for settings in "${NEXRENDER_SETTINGS[@]}"; do
    read -r timeout ordering <<<"$settings"
    i=$((i + 1))
    tap="$WORK/nexrender-$i.tap"
    # A fresh server state each time: the tests take any queued nexrender job, and refuse to
    # run on a server holding nexrender jobs they did not create.
    "$stop"
    "$start" "$i" "$timeout" "$ordering"
    rc=0
    # The variables the server was started with tell helpers.js what it runs with.
    (cd "$dir" && unset EDGEFARM_NEXRENDER_MAX_ATTEMPTS &&
      EDGEFARM_URL="$B" EDGEFARM_SECRET="$SECRET" EDGEFARM_NEXRENDER_TIMEOUT_MS="$timeout" \
        EDGEFARM_NEXRENDER_ORDERING="$ordering" EDGEFARM_NEXRENDER_BODY_BYTES="$NEXRENDER_BODY_BYTES" node --test --test-concurrency=1 --test-reporter=tap) \
      >"$tap" 2>&1 || rc=$?
    echo "nexrender timeout $timeout ms, $ordering:" \
      "$(grep -v '# SKIP' "$tap" | grep -c '^ok [0-9]* - ' || true) passed," \
      "$(grep -c '^ok [0-9]* - .*# SKIP' "$tap" || true) skipped for other settings," \
      "$(grep -c '^not ok ' "$tap" || true) failed"
    if [ "$rc" -ne 0 ] || grep -q '^not ok ' "$tap"; then
      grep -v -e '^# SKIP' -e '# SKIP ' "$tap" | tail -80
      echo "nexrender stock clients through $label: FAILED (node --test exit $rc)"
      exit 1
    fi
  done
  "$stop"
  # Every run lists every test; a test counts as passed if one run passed it, and as skipped
  # (not a pass) if no run had its settings.
  local names passed skipped
  names=$(sed -n 's/^ok [0-9]* - //p' "$WORK"/nexrender-*.tap)
  passed=$({ grep -v ' # SKIP' <<<"$names" || true; } | sort -u)
  skipped=$({ grep ' # SKIP' <<<"$names" || true; } | sed 's/ # SKIP.*//' | sort -u | comm -23 - <(printf '%s\n' "$passed"))
  # shellcheck disable=SC2001 # a prefix on every line of a multi-line value
  [ -z "$skipped" ] || sed 's/^/SKIP (no run had its nexrender settings): /' <<<"$skipped"
  echo "nexrender stock clients through $label: $(grep -c . <<<"$passed" || true) passed," \
    "$(grep -c . <<<"$skipped" || true) skipped (not passes); ${#NEXRENDER_SETTINGS[@]} server starts," \
    "$((SECONDS - t0))s"
}

