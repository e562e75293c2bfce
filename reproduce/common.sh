# reproduce/common.sh: what every section of scripts/reproduce shares, sourced
# by reproduce/<section>.sh after it sets `section` (its name, e.g. linformer).
#
# A section trains and evaluates with the normal binaries and flagfiles, keeps
# each step's command line, log and seconds under its run directory, and ends
# by calling its results writer (reproduce/<section>_results.py, through
# `write_results`), which puts a table and a PNG into docs/RESULTS.md between
# <!-- <section>:begin --> and <!-- <section>:end -->.
#
# Provides:
#   parse_section_args "$@"   --fresh, -h/--help (the caller's header comment);
#                             the other arguments are left in section_args
#   no_section_args           a section that takes no other argument refuses one
#   need_binaries B...        builds the named binaries when missing, checks the
#                             Python (matplotlib), sources scripts/env.sh
#   run_step DIR LABEL CMD... runs CMD in the foreground, its output in
#                             DIR/LABEL.log, its command line in DIR/LABEL.cmd and,
#                             last, {"seconds": S} in DIR/LABEL.done; a step whose
#                             .done exists and whose .cmd is unchanged is reused
#                             (so an interrupted reproduction resumes), unless
#                             --fresh was given or an earlier step of the same DIR
#                             ran in this invocation (its outputs are new)
#   ran_here DIR              true when a step of DIR ran (was not reused) in this
#                             invocation: what depends on its outputs must run too
#   depends_on DIR UPSTREAM...  DIR's steps run again when a step of an UPSTREAM
#                             directory ran in this invocation (e.g. a fine-tuning
#                             whose --init_from model was trained again: its own
#                             command line is unchanged)
#   scaled N                  N, or a small smoke number when smoke=true
#   write_results ARGS...     runs reproduce/<section>_results.py with --run_dir,
#                             --results, --png_dir, --root, --smoke and ARGS
#   replacing PATH... -- CMD...  removes the PATHs (one ending in / is made
#                             again, empty), then runs CMD: a run_step command
#                             whose binary would append to (--metrics) or keep
#                             what an earlier run of the step left
#   log MSG / fail MSG [LOG]  progress lines; fail prints LOG's last lines, exits 1
#
# Environment (the same for every section):
#   MEMTRAIN_REPRODUCE_SMOKE=1  a smoke run: every step count is cut to a few,
#                               so the whole pipeline runs in minutes; the
#                               written section says so in bold (numbers
#                               meaningless). CI's test runs this way.
#   MEMTRAIN_RUN_DIR            outputs (default runs/reproduce/<section>)
#   MEMTRAIN_BUILD_DIR          the build (default build); built only when missing
#   MEMTRAIN_PYTHON             Python with matplotlib (default .venv/bin/python)
#   MEMTRAIN_RESULTS            the markdown to update (default docs/RESULTS.md;
#                               the PNGs go to results/ beside it)
#   MEMTRAIN_SHARED_DATA        ../shared/data (the corpus samples)
set -euo pipefail

: "${section:?reproduce/common.sh: set section before sourcing}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${MEMTRAIN_BUILD_DIR:-${root}/build}"
bin="${build}/bin"
python="${MEMTRAIN_PYTHON:-${root}/.venv/bin/python}"
results="${MEMTRAIN_RESULTS:-${root}/docs/RESULTS.md}"
png_dir="$(dirname "${results}")/results"
shared_data="${MEMTRAIN_SHARED_DATA:-${root}/../shared/data}"
run="${MEMTRAIN_RUN_DIR:-${root}/runs/reproduce/${section}}"
smoke=false
[[ "${MEMTRAIN_REPRODUCE_SMOKE:-0}" == 1 ]] && smoke=true
fresh=false
section_args=()
declare -A _ran_in_dir=()

log() { echo "[reproduce ${section}] $*"; }
fail() {
  echo "[reproduce ${section}] FAILED: $1" >&2
  [[ -n "${2:-}" && -f "$2" ]] && { echo "---- last lines of $2:" >&2; tail -n 15 "$2" >&2; }
  exit 1
}

parse_section_args() {
  local script="${BASH_SOURCE[1]:-}"
  for arg in "$@"; do
    case "${arg}" in
      --fresh) fresh=true ;;
      -h | --help) sed -n '2,/^set -euo\|^section=/p' "${script}" | grep '^#' | sed 's/^# \{0,1\}//'; exit 0 ;;
      *) section_args+=("${arg}") ;;
    esac
  done
}

no_section_args() {
  (( ${#section_args[@]} == 0 )) ||
    { echo "[reproduce ${section}] unknown argument '${section_args[0]}' (only --fresh, --help)" >&2; exit 2; }
}

need_binaries() {
  local missing=() b
  for b in "$@"; do [[ -x "${bin}/${b}" ]] || missing+=("${b}"); done
  if (( ${#missing[@]} > 0 )); then
    log "building ${missing[*]} in ${build} (first time: ~10 minutes)"
    "${root}/scripts/setup"
    [[ -f "${build}/CMakeCache.txt" ]] || cmake -S "${root}" -B "${build}" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
    cmake --build "${build}" -j "$(nproc)" --target "${missing[@]}" | grep -v '^\[' || true
  fi
  if ! "${python}" -c 'import matplotlib' 2>/dev/null; then
    log "${python} has no matplotlib; running scripts/setup"
    "${root}/scripts/setup"
  fi
  # shellcheck source=scripts/env.sh
  source "${root}/scripts/env.sh"
}

run_step() {
  local dir="$1" label="$2"
  shift 2
  mkdir -p "${dir}"
  local record="$*"
  if [[ "${fresh}" == false && -z "${_ran_in_dir[${dir}]:-}" && -f "${dir}/${label}.done" \
        && -f "${dir}/${label}.cmd" && "$(cat "${dir}/${label}.cmd")" == "${record}" ]]; then
    log "${dir#"${run}/"}: ${label} done before, reused (--fresh to run it again)"
    return
  fi
  _ran_in_dir[${dir}]=1
  rm -f "${dir}/${label}.done"
  printf '%s\n' "${record}" > "${dir}/${label}.cmd"
  log "running ${dir#"${run}/"}: ${label}"
  local start=${EPOCHREALTIME}
  "$@" > "${dir}/${label}.log" 2>&1 || fail "${dir#"${run}/"}: ${label} (log: ${dir}/${label}.log)" "${dir}/${label}.log"
  local seconds
  seconds="$(awk -v a="${start}" -v b="${EPOCHREALTIME}" 'BEGIN { printf "%.3f", b - a }')"
  printf '{"seconds": %s}\n' "${seconds}" > "${dir}/${label}.done"
}

ran_here() { [[ -n "${_ran_in_dir[$1]:-}" ]]; }

depends_on() {
  local dir="$1" upstream
  shift
  for upstream in "$@"; do
    if ran_here "${upstream}"; then _ran_in_dir[${dir}]=1; fi
  done
}

scaled() {
  if [[ "${smoke}" == true ]]; then echo "${2:-4}"; else echo "$1"; fi
}

write_results() {
  mkdir -p "${png_dir}"
  local smoke_flag=()
  [[ "${smoke}" == true ]] && smoke_flag=(--smoke)
  "${python}" "${root}/reproduce/${section}_results.py" --run_dir="${run}" --results="${results}" \
    --png_dir="${png_dir}" --root="${root}" "${smoke_flag[@]}" "$@"
}

replacing() {
  while [[ "$1" != -- ]]; do
    rm -rf "$1"
    [[ "$1" != */ ]] || mkdir -p "$1"
    shift
  done
  shift
  "$@"
}
