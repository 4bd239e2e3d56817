#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, -fsanitize=fuzzer,address,undefined)
# straight from the sources in imap/ and runs each for a bounded time. Prints
# TAP: one line per target, "ok", "not ok" (with the crash input and how to
# replay it), or "ok ... # SKIP" when clang or its fuzzer runtime is missing.
#
#   tests/fuzz/run.sh [-t SECONDS] [-w WORKDIR] [TARGET...]
#
#   -t SECONDS  run time of each target (default $FUZZ_SECONDS, else 30; with
#               IMAPFS_LONG=1, as tests/run.sh --long sets: $FUZZ_LONG_SECONDS, else 600)
#   -w WORKDIR  binaries, the growing corpus and crash files (default
#               $FUZZ_WORKDIR, else build-fuzz/); the seeds in
#               tests/fuzz/seeds/TARGET/ are read, never written
#   TARGET      parse, rfc2047, utf7, date, header, quote, bodystructure, mime_decode,
#               query (default: all)
#
# Replay one input:  WORKDIR/fuzz_parse CRASHFILE
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../.." && pwd)
seconds=${FUZZ_SECONDS:-30}
[ "${IMAPFS_LONG:-0}" = 1 ] && seconds=${FUZZ_LONG_SECONDS:-600}
work=${FUZZ_WORKDIR:-$src/build-fuzz}
while getopts "t:w:" o; do
        case "$o" in
        t) seconds=$OPTARG ;;
        w) work=$OPTARG ;;
        *) echo "usage: $0 [-t SECONDS] [-w WORKDIR] [TARGET...]" >&2; exit 2 ;;
        esac
done
shift $((OPTIND - 1))
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(parse rfc2047 utf7 date header quote bodystructure mime_decode query)
codec=(parse.c quote.c utf7.c charset.c rfc2047.c date.c header.c bodystructure.c mime_name.c mime_decode.c
       query.c query_keys.c query_out.c query_name.c)

echo "1..${#targets[@]}"
cc=${FUZZ_CC:-clang}
mkdir -p "$work"
probe="$work/probe"
printf '#include <stddef.h>\n#include <stdint.h>\nint LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { (void)d; (void)n; return 0; }\n' >"$probe.c"
if ! command -v "$cc" >/dev/null 2>&1 ||
        ! "$cc" -fsanitize=fuzzer,address,undefined "$probe.c" -o "$probe" >"$probe.log" 2>&1; then
        why="$cc with -fsanitize=fuzzer not available (install clang libclang-rt-14-dev)"
        n=0
        for t in "${targets[@]}"; do
                n=$((n + 1))
                echo "ok $n - fuzz_$t # SKIP $why"
        done
        sed 's/^/# /' "$probe.log" 2>/dev/null | head -5
        exit 0
fi

cflags=(-std=c11 -D_GNU_SOURCE -I"$src" -I"$here" -g -O1 -fno-omit-frame-pointer
        -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all
        -Wall -Wextra -Werror)
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1}:detect_leaks=1
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1}:halt_on_error=1:print_stacktrace=1
status=0
n=0
for t in "${targets[@]}"; do
        n=$((n + 1))
        name=fuzz_$t
        bin="$work/$name"
        log="$work/$name.log"
        if [ ! -f "$here/$name.c" ]; then
                echo "not ok $n - $name # no such target ($here/$name.c)"
                status=1
                continue
        fi
        if ! "$cc" "${cflags[@]}" "$here/$name.c" "${codec[@]/#/$src/imap/}" -o "$bin" >"$log" 2>&1; then
                echo "not ok $n - $name # does not build"
                sed 's/^/# /' "$log" | head -40
                status=1
                continue
        fi
        corpus="$work/corpus/$t"
        mkdir -p "$corpus" "$work/crashes"
        seeds=()
        [ -d "$here/seeds/$t" ] && seeds=("$here/seeds/$t")
        maxlen=4096
        [ "$t" = parse ] && maxlen=16384
        # The growing corpus comes first: libFuzzer writes new inputs there,
        # never into the seeds. One job, one core.
        "$bin" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len="$maxlen" \
                -print_final_stats=1 -artifact_prefix="$work/crashes/$name-" \
                "$corpus" "${seeds[@]}" >"$log" 2>&1
        rc=$?
        runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
        cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1)
        if [ $rc -eq 0 ]; then
                echo "ok $n - $name (${seconds}s, ${runs:-?} runs, ${cov:-cov: ?})"
        else
                status=1
                crash=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -1)
                echo "not ok $n - $name (exit $rc)"
                echo "# input: ${crash:-none saved}; replay: $bin ${crash:-CRASHFILE}"
                grep -E 'ERROR|fuzz check failed|runtime error|SUMMARY|^ *#[0-9]+ .*(/imap/|/tests/fuzz/)' "$log" |
                        head -30 | sed 's/^/# /'
        fi
done
exit $status
