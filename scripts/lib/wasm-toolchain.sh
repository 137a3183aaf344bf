# Sourced by scripts/cloudflare-build, scripts/spin-build and scripts/wasm-setup: which Rust
# toolchain builds a wasm target, and what to tell a user who has none.
# shellcheck shell=bash
#
# Two paths, picked by what the machine has:
# - standard: a toolchain whose sysroot has the target's prebuilt std (`rustup target add T`
#   puts `libstd-*.rlib` in `rustc --print target-libdir --target T`). Used as is: no
#   RUSTC_BOOTSTRAP, no -Zbuild-std. This is what a rustup install on macOS, Windows or any Linux
#   has once the target is added.
# - debian: no toolchain has that std (e.g. machines that reach no rustup download server) and
#   the OS is Debian-like: Debian's rustc-web, linked as the rustup toolchain `debian-web` by
#   scripts/wasm-setup, with std rebuilt from rust-web-src (RUSTC_BOOTSTRAP=1 +
#   CARGO_UNSTABLE_BUILD_STD, scoped to the calling build: they make crates that probe for
#   nightly think they are on nightly).
# EDGEFARM_WASM_TOOLCHAIN=standard|debian overrides the choice (default: auto).
# The checked path of the rustc wrapper is the one cargo runs: $RUSTC, else `rustc` on PATH.

# The worker-build that matches the `worker` 0.8.x crate in Cargo.toml.
EDGEFARM_WORKER_BUILD_VERSION=0.8.7
# Wrangler 4 needs Node 22.12 or later.
EDGEFARM_NODE_MIN=22.12
EDGEFARM_DEBIAN_TOOLCHAIN=debian-web

# True when toolchain $1 ("" = the active one) has target $2's std installed.
wasm_toolchain_has_std() {
  local dir f
  if [ -n "$1" ]; then
    dir=$(RUSTUP_TOOLCHAIN=$1 "${RUSTC:-rustc}" --print target-libdir --target "$2" 2>/dev/null) || return 1
  else
    dir=$("${RUSTC:-rustc}" --print target-libdir --target "$2" 2>/dev/null) || return 1
  fi
  [ -n "$dir" ] || return 1
  for f in "$dir"/libstd-*.rlib; do
    [ -e "$f" ] && return 0
  done
  return 1
}

# The installed rustup toolchains, one name a line (nothing without rustup).
wasm_rustup_toolchains() {
  command -v rustup >/dev/null 2>&1 || return 0
  rustup toolchain list 2>/dev/null | awk '{print $1}'
}

# Prints the toolchain that has target $1's std: "" for the active one, else a rustup name.
# Fails when none has it. The Debian toolchain is never a candidate: its sysroot can hold
# Debian's far older libstd-rust-dev-wasm32, which rustc-web cannot use.
wasm_std_toolchain() {
  local tc
  if [ "${RUSTUP_TOOLCHAIN:-}" != "$EDGEFARM_DEBIAN_TOOLCHAIN" ] && wasm_toolchain_has_std "" "$1"; then
    return 0
  fi
  while read -r tc; do
    case $tc in "" | "$EDGEFARM_DEBIAN_TOOLCHAIN") continue ;; esac
    if wasm_toolchain_has_std "$tc" "$1"; then
      echo "$tc"
      return 0
    fi
  done < <(wasm_rustup_toolchains)
  return 1
}

# True on Debian and its derivatives (os-release ID or ID_LIKE). EDGEFARM_OS_RELEASE names
# another os-release file (the selection test uses it).
wasm_debian_like() (
  file=${EDGEFARM_OS_RELEASE:-/etc/os-release}
  [ -r "$file" ] || exit 1
  ID="" ID_LIKE=""
  # shellcheck disable=SC1090
  . "$file"
  case " $ID $ID_LIKE " in
    *" debian "*) exit 0 ;;
    *) exit 1 ;;
  esac
)

# What a machine without the Debian recipe installs instead (stderr).
wasm_standard_help() {
  cat >&2 <<EOF
  With rustup (https://rustup.rs), add the wasm targets' prebuilt std:
    rustup target add wasm32-unknown-unknown wasm32-wasip2
  For Cloudflare Workers also:
    cargo install worker-build --version $EDGEFARM_WORKER_BUILD_VERSION   # fetches wasm-bindgen, wasm-opt, esbuild itself
    Node.js $EDGEFARM_NODE_MIN or later (for wrangler: npx wrangler ...)
EOF
}

# Picks the toolchain for target $1 on behalf of script $2, exports the build environment and
# prints one line saying which path was taken. Sets WASM_TOOLCHAIN_PATH to standard or debian.
# Fails (with what to install) when neither path is possible.
wasm_select_toolchain() {
  local target=$1 who=$2 choice=${EDGEFARM_WASM_TOOLCHAIN:-auto} tc="" why
  case $choice in
    auto)
      if tc=$(wasm_std_toolchain "$target"); then
        WASM_TOOLCHAIN_PATH=standard
        why="${tc:-the active toolchain} has the $target std"
      elif wasm_debian_like; then
        WASM_TOOLCHAIN_PATH=debian
        why="no toolchain has the $target std; Debian-like machine"
      else
        echo "$who: no Rust toolchain here has the $target std, and this is not a Debian-like machine." >&2
        wasm_standard_help
        echo "  (EDGEFARM_WASM_TOOLCHAIN=standard|debian skips this check.)" >&2
        return 1
      fi
      ;;
    standard)
      tc=$(wasm_std_toolchain "$target") || tc=""
      WASM_TOOLCHAIN_PATH=standard
      why="EDGEFARM_WASM_TOOLCHAIN=standard"
      ;;
    debian)
      WASM_TOOLCHAIN_PATH=debian
      why="EDGEFARM_WASM_TOOLCHAIN=debian"
      ;;
    *)
      echo "$who: EDGEFARM_WASM_TOOLCHAIN must be auto, standard or debian, not '$choice'" >&2
      return 2
      ;;
  esac
  if [ "$WASM_TOOLCHAIN_PATH" = standard ]; then
    [ -z "$tc" ] || export RUSTUP_TOOLCHAIN="$tc"
    echo "$who: standard toolchain ${tc:-(active)} for $target ($why): prebuilt std, no RUSTC_BOOTSTRAP, no build-std" >&2
    return 0
  fi
  if ! wasm_rustup_toolchains | grep -qx "$EDGEFARM_DEBIAN_TOOLCHAIN"; then
    echo "$who: the Debian fallback for $target needs the rustup toolchain $EDGEFARM_DEBIAN_TOOLCHAIN: run scripts/wasm-setup first." >&2
    echo "  Or use a standard toolchain instead:" >&2
    wasm_standard_help
    return 1
  fi
  export RUSTUP_TOOLCHAIN=$EDGEFARM_DEBIAN_TOOLCHAIN RUSTC_BOOTSTRAP=1 CARGO_UNSTABLE_BUILD_STD=std,panic_abort
  echo "$who: Debian fallback for $target ($why): $EDGEFARM_DEBIAN_TOOLCHAIN, std rebuilt with RUSTC_BOOTSTRAP=1 and build-std" >&2
}

# Sources scripts/wasm-setup's environment when present (local wasm-bindgen, wasm-opt, esbuild,
# worker-build, Node 22), keeping only the *_BIN tools that exist: without them worker-build
# falls back to its own defaults (it downloads the versions it pins).
wasm_local_tools() {
  local env_file="$EDGEFARM_CACHE/wasm-env.sh" var
  if [ -f "$env_file" ]; then
    # shellcheck disable=SC1090
    . "$env_file"
  fi
  for var in WASM_BINDGEN_BIN WASM_OPT_BIN ESBUILD_BIN; do
    if [ -n "${!var:-}" ] && [ ! -x "${!var}" ]; then
      unset "$var"
    fi
  done
}
