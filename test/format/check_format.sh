#!/usr/bin/env bash
# Every C++ file of the repository is as clang-format (.clang-format at the root) writes it: the
# files it would change are listed, and the check fails. Fix with
#   git ls-files '*.cc' '*.h' | xargs clang-format -i
# Usage: check_format.sh SOURCE_DIR
set -euo pipefail
cd "$1"
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  mapfile -t files < <(git ls-files '*.cc' '*.h')
else
  mapfile -t files < <(find src test bench -name '*.cc' -o -name '*.h')
fi
unformatted=()
for file in "${files[@]}"; do
  if ! clang-format --dry-run --Werror "$file" >/dev/null 2>&1; then unformatted+=("$file"); fi
done
if [ "${#unformatted[@]}" -gt 0 ]; then
  printf 'not formatted: %s\n' "${unformatted[@]}"
  echo "${#unformatted[@]} of ${#files[@]} files differ from clang-format's output"
  exit 1
fi
echo "${#files[@]} files, all formatted"
