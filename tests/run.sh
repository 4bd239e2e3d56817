#!/usr/bin/env bash
# Builds imapfs and runs every test (Check unit tests, then integration tests
# that start a throwaway Dovecot and mount for real), then prints
# "N passed, N failed, N skipped" counted from each test's TAP output.
#
#   tests/run.sh              build in ./build and run everything
#   tests/run.sh --sanitize   same in ./build-asan with ASan + UBSan
#   tests/run.sh --clean      start from an empty build directory
#   tests/run.sh --suite unit only the unit tests (or: integration, fuzz)
#   tests/run.sh --long       only the long runs, not CI: the long fault schedule
#                             (integration/test_chaos) and, with --sanitize, each
#                             fuzz target for 10 minutes (IMAPFS_LONG=1)
#
# The fuzz targets (tests/fuzz/run.sh, about 30 s each) run in the --sanitize
# pass only.
set -uo pipefail
cd "$(dirname "$0")/.."

builddir=build
setup_args=()
clean=0
suite=()
long=0
while [ $# -gt 0 ]; do
        case "$1" in
        --sanitize)
                builddir=build-asan
                setup_args+=(-Db_sanitize=address,undefined -Db_lundef=false)
                ;;
        --clean) clean=1 ;;
        --long) long=1 ;;
        --suite) suite+=(--suite "$2"); shift ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
        esac
        shift
done

bash examples/install-deps.sh || { echo "could not install dependencies" >&2; exit 1; }
[ "$clean" -eq 1 ] && rm -rf "$builddir"
if [ ! -f "$builddir/build.ninja" ]; then
        meson setup "$builddir" "${setup_args[@]}" >/dev/null || exit 1
fi
ninja -C "$builddir" || exit 1

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
# The suite's fault schedule has a fixed seed per pass (one server without MOVE, one with),
# so that a run can be replayed; --long draws new seeds (IMAPFS_CHAOS_SEED overrides both).
if [ "$long" -eq 0 ]; then
        default_seed=7
        [ "$builddir" = build-asan ] && default_seed=4
        export IMAPFS_CHAOS_SEED=${IMAPFS_CHAOS_SEED:-$default_seed}
fi
tests=()
if [ "$long" -eq 1 ]; then
        export IMAPFS_LONG=1
        tests=(integration/test_chaos)
        [ "$builddir" = build-asan ] && tests+=(fuzz)
        suite+=(--timeout-multiplier 10)
fi
meson test -C "$builddir" --print-errorlogs "${suite[@]}" "${tests[@]}" >"$builddir/test-output.txt" 2>&1
status=$?
grep -E '^ *[0-9]+/[0-9]+ ' "$builddir/test-output.txt" || tail -40 "$builddir/test-output.txt"

/usr/bin/python3 - "$builddir/meson-logs/testlog.json" "$builddir/summary.txt" <<'PY'
import json, re, sys
passed = failed = skipped = 0
fails = []
for line in open(sys.argv[1]):
    t = json.loads(line)
    oks = nots = skips = 0
    for l in (t.get("stdout") or "").splitlines():
        m = re.match(r"^(not )?ok\b", l)
        if not m:
            continue
        if m.group(1):
            nots += 1
        elif re.search(r"#\s*SKIP", l, re.I):
            skips += 1
        else:
            oks += 1
    # A program that died before reporting counts as one failure.
    if t.get("result") not in ("OK", "EXPECTEDFAIL", "SKIP") and nots == 0:
        nots += 1
        print(f"{t['name']}: {t.get('result')}", file=sys.stderr)
        fails.append(f"{t['name']}: {t.get('result')} before reporting every subtest")
    # Name every failed subtest, with the lines after it, at the end of the output: CI
    # shows only the tail of a run, and a failure in the first pass would be cut off.
    lines = (t.get("stdout") or "").splitlines()
    for i, l in enumerate(lines):
        if l.startswith("not ok"):
            fails.append(f"{t['name']}: {l}")
            fails.extend("    " + x for x in lines[i + 1:i + 8] if x.startswith("#"))
    passed += oks; failed += nots; skipped += skips
open(sys.argv[2] + ".failures", "w").write("".join(x + "\n" for x in fails))
open(sys.argv[2], "w").write(f"{passed} {failed} {skipped}\n")
print(f"{passed} passed, {failed} failed, {skipped} skipped")
PY
[ $? -eq 0 ] || exit 1
exit $status
