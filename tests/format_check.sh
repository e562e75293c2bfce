#!/usr/bin/env bash
# Every C++ source and header memtrain owns is formatted as .clang-format says
# (Google style, 100 columns); third_party/ is kept as its authors wrote it.
# Fix with:  git ls-files '*.cpp' '*.h' | grep -v ^third_party/ | xargs clang-format -i
#
#   format_check.sh SOURCE_DIR
set -euo pipefail
cd "$1"
if ! command -v clang-format >/dev/null; then
  echo "clang-format is not installed (scripts/setup installs it)" >&2
  exit 1
fi
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  mapfile -t files < <(git ls-files '*.cpp' '*.h' | grep -v '^third_party/')
else
  mapfile -t files < <(find . -path ./third_party -prune -o -path './build*' -prune -o -path ./.venv -prune \
                         -o \( -name '*.cpp' -o -name '*.h' \) -print)
fi
bad=()
for file in "${files[@]}"; do
  clang-format --dry-run -Werror "${file}" >/dev/null 2>&1 || bad+=("${file}")
done
if ((${#bad[@]})); then
  printf 'not clang-formatted (%d of %d files):\n' "${#bad[@]}" "${#files[@]}" >&2
  printf '  %s\n' "${bad[@]}" >&2
  echo "fix: git ls-files '*.cpp' '*.h' | grep -v ^third_party/ | xargs clang-format -i" >&2
  exit 1
fi
echo "${#files[@]} files clang-formatted"
