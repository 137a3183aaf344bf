# shellcheck shell=bash
# The checks scripts/cloudflare-conformance and scripts/spin-conformance both run against a
# runtime under test, each written once. Source it after setting:
#   B          the runtime's base URL (http://127.0.0.1:PORT)
#   SECRET     its farm secret
#   WORK       a scratch directory for logs and node state
#   CARGO_TARGET_DIR
# Every function exits the script with a message on failure.

# A JSON request with the farm secret: conformance_api METHOD PATH [JSON]
conformance_api() {
  curl -s -m 20 -X "$1" -H "authorization: Bearer $SECRET" -H 'content-type: application/json' \
    ${3:+--data "$3"} "$B$2"
}

# The HTTP conformance suite against $B (long leases) and LAPSE_URL (short leases):
#   run_conformance_suite LABEL LAPSE_URL [extra libtest args...]
# Cases that need what the runtime does not promise print `SKIP (...): name`; they are counted
# and never reported as passes. On failure the suite log (and every *.log in $WORK, with
# EDGEFARM_KEEP_LOGS=DIR) is kept.
run_conformance_suite() {
  local label=$1 lapse=$2
  shift 2
  echo "== conformance suite over HTTP, $label"
  local log="$WORK/suite-${label// /-}.log" rc=0
  EDGEFARM_URL="$B" EDGEFARM_LAPSE_URL="$lapse" EDGEFARM_SECRET="$SECRET" \
    cargo test -q --test conformance http:: -- --nocapture "$@" >"$log" 2>&1 || rc=$?
  grep -E '^test result|FAILED|panicked' "$log" || true
  # Skip lines can share a line with test progress output, hence -o rather than ^; grep finds
  # nothing when no case skipped (`|| true` keeps pipefail from ending the script).
  local skips passed
  skips=$({ grep -o 'SKIP ([^)]*): [a-z_0-9]*' "$log" || true; } | sort -u | tee >(cat >&2) | wc -l)
  passed=$(sed -n 's/^test result: [a-zA-Z]*\. \([0-9]*\) passed.*/\1/p' "$log" | tail -1)
  echo "$label: $((${passed:-0} - skips)) passed, $skips skipped (not passes), exit $rc"
  if [ "$rc" -ne 0 ]; then
    tail -60 "$log"
    keep_logs "$log"
    exit "$rc"
  fi
}

# A job's end reaches a real receiver, signed, once: webhooks_delivered LABEL BASE DELIVER
# BASE is a runtime that allows private receivers (EDGEFARM_WEBHOOKS_ALLOW_PRIVATE=1).
# DELIVER=cli: `edgefarm webhooks deliver --once` sends it (runtimes with no background work);
# DELIVER=self: the runtime sends it by itself (a Durable Object's alarm).
webhooks_delivered() {
  local label=$1 base=$2 how=$3
  echo "== webhooks through $label (delivered by: $how)"
  cargo build -q --bin edgefarm
  local bin="$CARGO_TARGET_DIR/debug/edgefarm" out="$WORK/webhooks.jsonl" portf="$WORK/webhook.port"
  local hs q id task lease port rpid n
  hs="whsec_$(head -c 32 /dev/urandom | base64 -w0)"
  rm -f "$out" "$portf"
  python3 tests/fixtures/webhook_receiver.py "$hs" "$portf" "$out" >"$WORK/receiver.log" 2>&1 &
  rpid=$!
  # Waits for the receiver to say its port (generous: Python can start slowly under load).
  for _ in $(seq 1 600); do [ -s "$portf" ] && break; sleep 0.1; done
  [ -s "$portf" ] || { echo "the webhook receiver did not start:"; cat "$WORK/receiver.log"; exit 1; }
  port=$(cat "$portf")
  q="hooks-$RANDOM" id="hook-probe-$RANDOM$RANDOM"
  B="$base" conformance_api POST /v1/jobs "{\"id\":\"$id\",\"type\":\"command\",\"queue\":\"$q\",\"frames\":\"1\",\"params\":{\"program\":\"touchframe\"},\"webhooks\":[{\"url\":\"http://127.0.0.1:$port/hook\",\"secret\":\"$hs\"}]}" >/dev/null
  task=$(B="$base" conformance_api POST "/v1/queue/$q" '{"node":"hooks","max":1}')
  lease=$(jq -c '.tasks[0].lease' <<<"$task")
  B="$base" conformance_api POST "/v1/tasks/$(jq -r '.tasks[0]._id' <<<"$task")/ack" \
    "{\"lease\":$lease,\"status\":\"done\",\"result\":{}}" >/dev/null
  if [ "$how" = cli ]; then
    "$bin" webhooks deliver --once --allow-private --url "$base" --secret "$SECRET" >>"$WORK/deliver.log" 2>&1
  fi
  for _ in $(seq 1 300); do grep -q "\"$id\"" "$out" 2>/dev/null && break; sleep 0.2; done
  kill "$rpid" 2>/dev/null || true
  wait "$rpid" 2>/dev/null || true
  n=$(grep -c "\"$id\"" "$out" 2>/dev/null || true)
  if [ "${n:-0}" -ne 1 ] || ! grep "\"$id\"" "$out" | jq -e '.valid and .type == "job.completed"' >/dev/null; then
    echo "webhooks through $label: ${n:-0} deliveries of $id; receiver got:"
    cat "$out" 2>/dev/null || true
    B="$base" conformance_api GET /v1/webhooks/deliveries | jq -c '.deliveries[]' | tail -5
    exit 1
  fi
  echo "webhooks through $label: job.completed delivered once, signature valid"
}

# Copies the named logs and every *.log of $WORK to $EDGEFARM_KEEP_LOGS, when set.
keep_logs() {
  if [ -n "${EDGEFARM_KEEP_LOGS:-}" ]; then
    mkdir -p "$EDGEFARM_KEEP_LOGS"
    cp "$@" "$WORK"/*.log "$EDGEFARM_KEEP_LOGS"/ 2>/dev/null || true
  fi
}

# A real `edgefarm node` renders a 6-frame job through $B: node_renders_through LABEL
node_renders_through() {
  local label=$1
  echo "== a native render node through $label"
  cargo build -q --bin edgefarm
  local bin="$CARGO_TARGET_DIR/debug/edgefarm" nd="$WORK/node" q="node-$RANDOM"
  mkdir -p "$nd/project" "$nd/out"
  "$bin" node --url "$B" --secret "$SECRET" --queue "$q" --name conformance-node --slots 2 \
    --project-root "$nd/project" --output-root "$nd/out" --state-dir "$nd/state" \
    --program touch=/usr/bin/touch >"$WORK/node.log" 2>&1 &
  local npid=$!
  local id state=""
  id=$(conformance_api POST /v1/jobs "{\"type\":\"command\",\"queue\":\"$q\",\"frames\":\"1-6\",\"chunk_size\":2,\"params\":{\"program\":\"touch\",\"args\":[\"{output_root}/f_{frame}.out\"]}}" | jq -r .id)
  # Poll until done, with a deadline generous enough for a loaded machine.
  for _ in $(seq 1 600); do
    state=$(conformance_api GET "/v1/jobs/$id" | jq -r .state)
    [ "$state" = completed ] && break
    sleep 0.5
  done
  kill -TERM "$npid" 2>/dev/null || true
  wait "$npid" 2>/dev/null || true
  local files=0 f
  for f in "$nd"/out/f_[1-6].out; do [ -e "$f" ] && files=$((files + 1)); done
  if [ "$state" != completed ] || [ "$files" -ne 6 ]; then
    echo "node through $label: job $state, $files of 6 frames; node log:"
    tail -30 "$WORK/node.log"
    exit 1
  fi
  echo "node through $label: job completed, 6 of 6 frame files written"
}

# A restart of the runtime keeps jobs, leases and lease tokens:
#   restart_keeps_jobs_and_leases LABEL STOP START
# STOP stops the runtime; `START N` starts it again on the same storage (N = 1, 2: a name for
# its log) and returns once it answers. The suite's long lease outlives the restart.
restart_keeps_jobs_and_leases() {
  local label=$1 stop=$2 start=$3
  echo "== a restart of $label keeps jobs, leases and tokens"
  "$stop"
  "$start" 1
  local q="restart-$RANDOM" id="restart-probe-$RANDOM$RANDOM"
  conformance_api POST /v1/jobs "{\"id\":\"$id\",\"type\":\"command\",\"queue\":\"$q\",\"frames\":\"1-2\",\"chunk_size\":1,\"params\":{\"program\":\"touchframe\",\"args\":[\"{frame}\"]}}" >/dev/null
  local claim lease task
  claim=$(conformance_api POST "/v1/queue/$q" '{"node":"r1","max":1,"tasks":[]}')
  lease=$(jq -r '.tasks[0].lease' <<<"$claim")
  task=$(jq -r '.tasks[0]._id' <<<"$claim")
  if [ -z "$lease" ] || [ "$lease" = null ]; then echo "restart check: no claim: $claim"; exit 1; fi
  "$stop"
  "$start" 2
  local got
  got=$(conformance_api GET "/v1/jobs/$id" | jq -r '.id')
  [ "$got" = "$id" ] || { echo "restart check: job lost: $got"; exit 1; }
  # The lease taken before the restart is still held (the other task is what a claim gets),
  # and its token still acks.
  local second
  second=$(conformance_api POST "/v1/queue/$q" '{"node":"r2","max":1,"tasks":[]}' | jq -r '[.tasks[]._id] | join(",")')
  if [ -z "$second" ] || [ "$second" = "$task" ]; then echo "restart check: leased task handed out again ($second)"; exit 1; fi
  local ack
  ack=$(curl -s -o /dev/null -w '%{http_code}' -m 20 -X POST -H "authorization: Bearer $SECRET" \
    --data "{\"lease\":\"$lease\",\"status\":\"done\",\"result\":{\"exit_code\":0}}" "$B/v1/tasks/$task/ack")
  [ "$ack" = 200 ] || { echo "restart check: ack after restart answered $ack"; exit 1; }
  echo "restart: job, lease and token survived"
}

# Blobs through a runtime that stores their bytes (docs/ASSETS.md): blobs_flow LABEL [OBJECT-CMD]
# A 24 MiB blob (over every request body limit but the blob's own, and over the size a shell
# reads before refusing) is missing, then uploaded, listed as present and downloaded whole and by
# range with the right bytes; an upload whose bytes do not hash to its name is refused (400,
# field `body`) and stores nothing. OBJECT-CMD, when given, is run as `OBJECT-CMD SHA256 FILE`
# and must succeed exactly when the backend itself holds the blob's bytes (written to FILE):
# the check that a refused upload left no object behind is made on the bucket, not on the farm's
# records.
blobs_flow() {
  local label=$1 object=${2:-}
  echo "== blobs through $label: missing, refused wrong bytes, upload, ranged download"
  local dir="$WORK/blobs" size=$((24 << 20)) sha bad code body
  mkdir -p "$dir"
  head -c "$size" /dev/urandom >"$dir/blob"
  head -c "$size" /dev/urandom >"$dir/other"
  sha=$(sha256sum "$dir/blob" | cut -d' ' -f1)
  blob_code() { curl -s -o "$dir/answer" -w '%{http_code}' -m 300 -H "authorization: Bearer $SECRET" "$@"; }
  local check="{\"blobs\":[{\"sha256\":\"$sha\",\"size\":$size}]}"
  [ "$(conformance_api POST /v1/blobs/missing "$check" | jq -r '.missing[0].sha256')" = "$sha" ] ||
    { echo "blobs: a new blob is not listed as missing"; exit 1; }
  # Wrong bytes under the name: refused, naming the body, and nothing stored anywhere.
  code=$(blob_code -T "$dir/other" "$B/v1/blobs/$sha")
  body=$(cat "$dir/answer")
  if [ "$code" != 400 ] || [ "$(jq -r '.error.field' <<<"$body")" != body ]; then
    echo "blobs: wrong bytes answered $code $body (want 400, field body)"; exit 1
  fi
  [ "$(conformance_api POST /v1/blobs/missing "$check" | jq -r '.missing | length')" = 1 ] ||
    { echo "blobs: a refused upload made the blob present"; exit 1; }
  code=$(blob_code "$B/v1/blobs/$sha")
  [ "$code" = 404 ] || { echo "blobs: a refused blob downloads ($code)"; exit 1; }
  if [ -n "$object" ] && "$object" "$sha" "$dir/stored" >"$dir/object.log" 2>&1; then
    echo "blobs: the refused bytes are in the bucket"; exit 1
  fi
  # No credentials: refused.
  code=$(curl -s -o /dev/null -w '%{http_code}' -m 60 -T "$dir/blob" "$B/v1/blobs/$sha")
  [ "$code" = 401 ] || { echo "blobs: an upload without credentials answered $code"; exit 1; }
  # The right bytes: stored (201), then already there (200).
  code=$(blob_code -T "$dir/blob" "$B/v1/blobs/$sha")
  [ "$code" = 201 ] || { echo "blobs: the upload answered $code $(cat "$dir/answer")"; exit 1; }
  code=$(blob_code -T "$dir/blob" "$B/v1/blobs/$sha")
  [ "$code" = 200 ] || { echo "blobs: a second upload answered $code $(cat "$dir/answer")"; exit 1; }
  [ "$(conformance_api POST /v1/blobs/missing "$check" | jq -c '[.missing, .present]')" = '[[],1]' ] ||
    { echo "blobs: the stored blob is still missing"; exit 1; }
  if [ -n "$object" ]; then
    "$object" "$sha" "$dir/stored" >"$dir/object.log" 2>&1 || { echo "blobs: no object in the bucket"; cat "$dir/object.log"; exit 1; }
    cmp -s "$dir/blob" "$dir/stored" || { echo "blobs: the bucket holds other bytes"; exit 1; }
  fi
  # Downloads: whole, one range, a range outside the blob, HEAD, an unknown hash.
  code=$(blob_code "$B/v1/blobs/$sha")
  if [ "$code" != 200 ] || ! cmp -s "$dir/blob" "$dir/answer"; then
    echo "blobs: the download answered $code with other bytes"; exit 1
  fi
  local headers="$dir/headers"
  code=$(blob_code -D "$headers" -H 'range: bytes=1000000-2999999' "$B/v1/blobs/$sha")
  # Bytes 1,000,000 to 2,999,999 without a pipe: `tail | head` dies of SIGPIPE under pipefail.
  dd if="$dir/blob" of="$dir/slice" bs=1000000 skip=1 count=2 status=none
  if [ "$code" != 206 ] || ! cmp -s "$dir/slice" "$dir/answer" ||
    ! grep -qi "^content-range: bytes 1000000-2999999/$size" "$headers"; then
    echo "blobs: the range answered $code, $(grep -i '^content-range' "$headers")"; exit 1
  fi
  code=$(blob_code -H "range: bytes=$size-" "$B/v1/blobs/$sha")
  [ "$code" = 416 ] || { echo "blobs: a range outside the blob answered $code"; exit 1; }
  code=$(blob_code -I -D "$headers" "$B/v1/blobs/$sha")
  if [ "$code" != 200 ] || ! grep -qi "^content-length: $size" "$headers"; then
    echo "blobs: HEAD answered $code, $(grep -i '^content-length' "$headers")"; exit 1
  fi
  bad=$(printf 'never uploaded' | sha256sum | cut -d' ' -f1)
  code=$(blob_code "$B/v1/blobs/$bad")
  [ "$code" = 404 ] || { echo "blobs: an unknown blob answered $code"; exit 1; }
  rm -rf "$dir"
  echo "blobs through $label: refused wrong bytes stored nothing; 24 MiB stored once, downloaded whole and by range"
}

# Stops the process whose pid the named variable holds, and empties the variable:
#   stop_pid VAR
stop_pid() {
  local pid=${!1}
  if [ -n "$pid" ]; then
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    printf -v "$1" '%s' ""
  fi
}

# Waits until URL/v1/health answers, while the process of the named pid variable lives:
#   wait_healthy URL PIDVAR LOG WHAT [TRIES] [PAUSE]
wait_healthy() {
  local url=$1 var=$2 log=$3 what=$4 tries=${5:-600} pause=${6:-0.5} t0=$SECONDS
  for _ in $(seq 1 "$tries"); do
    if curl -sf -m 5 -o /dev/null "$url/v1/health"; then
      echo "$what answered after $((SECONDS - t0))s"
      return 0
    fi
    kill -0 "${!var}" 2>/dev/null || break
    sleep "$pause"
  done
  echo "$what did not start; log:" >&2
  tail -40 "$log" >&2
  exit 1
}
