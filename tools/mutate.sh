#!/bin/sh
# Mutation testing: mutmut 2.5.1 breaks one small thing at a time in the modules whose lines
# guard secrets, identity, determinism and integrity, and runs that module's fast tests against
# each mutant; a mutant that no test notices "survived". Not part of the default test run.
#
#   pip install -e ".[mutate]"            # mutmut 2.5.1
#   tools/mutate.sh                       # every group below (about an hour on 2 cores)
#   tools/mutate.sh tree gpt              # some groups (greengrass tlog tree archive ext4csum gpt mbr)
#   tools/mutate.sh --list                # the groups, their modules and tests
#
# mutmut 2 edits the files in place, so it runs on a scratch copy of the checkout (MUTATE_DIR,
# default a new temporary folder); the checkout itself is never touched. Each group's score
# and its surviving mutants (as diffs) go to $MUTATE_DIR/<group>.txt, and one line per group
# is printed: killed/tested, how many were not tested, and the survivors' ids
# (`cd $MUTATE_DIR && mutmut show ID`).
set -eu

repo=$(cd "$(dirname "$0")/.." && pwd)

# group | module to mutate | the fast tests that judge it (a survivor runs them all, so keep
# them few; greengrass is the long one: about 1,000 mutants)
GROUPS='
greengrass|composer/rules/greengrass.py|tests/test_pinned_rules.py tests/test_recheck_greengrass.py tests/test_greengrass_field.py
tlog|composer/rules/tlog.py|tests/test_tlog_strict.py tests/test_units.py tests/test_yaml_cut.py tests/test_greengrass_field.py::test_tlog_read_as_the_nucleus_reads_it
tree|composer/tree.py|tests/test_pinned_sources.py tests/test_units.py
archive|composer/sources/archive.py|tests/test_pinned_sources.py tests/test_sources_archives.py tests/test_errors.py
ext4csum|composer/fs/ext4/csum.py|tests/fs/test_ext4.py::test_crc_matches_mke2fs tests/fs/test_ext4.py::test_superblock_facts tests/fs/test_ext4.py::test_kitchen_sink_is_clean_and_reads_back
gpt|composer/disk/gpt.py|tests/disk/test_disk_gpt.py tests/outputs/test_sfdisk_script.py
mbr|composer/disk/mbr.py|tests/disk/test_disk_mbr.py tests/test_judges.py::test_mbr_disk_signature_and_raw_blob_match_sfdisk tests/test_newcomer.py::test_mbr_partuuid_is_signature_dash_number
'

if [ "${1:-}" = "--list" ]; then
    echo "$GROUPS" | sed '/^$/d'
    exit 0
fi
command -v mutmut >/dev/null || { echo "mutate.sh: pip install -e \".[mutate]\" first" >&2; exit 1; }

work=${MUTATE_DIR:-$(mktemp -d /tmp/compose-mutate.XXXXXX)}
mkdir -p "$work"
# the tracked files plus what the tests need that is not tracked (none today)
(cd "$repo" && git ls-files -z | xargs -0 tar -cf - --) | tar -xf - -C "$work"
cd "$work"
export PYTHONPATH="$work"   # the copy, not an editable install of the checkout

wanted=" $* "
echo "$GROUPS" | sed '/^$/d' | while IFS='|' read -r group modules tests; do
    case "$wanted" in "  "|*" $group "*) ;; *) continue ;; esac
    rm -f .mutmut-cache
    # mutmut 2.5.1 can stop on an assertion in its own cache (cached_mutation_status) and then
    # hang: the timeout ends such a run, and the tally counts the mutants tested until then
    timeout "${MUTATE_TIMEOUT:-7200}" \
        mutmut run --paths-to-mutate "$modules" --tests-dir tests --simple-output --no-progress \
        --runner "python3 -m pytest -x -q -p no:cacheprovider $tests" \
        < /dev/null > "$group.run" 2>&1 || true
    # the tally from mutmut's own cache (sqlite): killed, timeout, suspicious, survived
    set -- $(python3 -c "import sqlite3
rows = dict(sqlite3.connect('.mutmut-cache').execute(
    'select status, count(*) from Mutant group by status').fetchall())
print(*(rows.get(s, 0) for s in ('ok_killed', 'bad_timeout', 'ok_suspicious', 'bad_survived',
                                 'untested')))")
    killed=$1 timeout=$2 suspicious=$3 survived=$4 untested=$5
    total=$((killed + timeout + suspicious + survived))
    ids=$(mutmut result-ids survived < /dev/null 2>/dev/null || true)
    {
        echo "$group ($modules): killed $killed, timeout $timeout, suspicious $suspicious, survived $survived of $total"
        for id in $ids; do mutmut show "$id" < /dev/null; echo; done
    } > "$group.txt"
    stopped=""
    grep -q "Traceback" "$group.run" && stopped=" (mutmut stopped early, see $group.run)"
    echo "$group: $((killed + timeout))/$total killed ($untested not tested); survivors:" \
        "${ids:-none}$stopped"
done
echo "mutate.sh: details in $work/<group>.txt" >&2
