#!/usr/bin/env python3
"""Adds one feature to librdkafka's test framework (tests/test.c) in the
build copy made by scripts/compat-librdkafka.sh: the environment variable
RINGLOG_SUBTESTS_SKIP, a '|'-separated list of substrings; a sub-test
(SUB_TEST()) whose name contains one of them is not run and is reported as
"[ <name>: SKIP: RINGLOG_SUBTESTS_SKIP ]". librdkafka's own SUBTESTS only
selects sub-tests; this is its negation, so that the sub-tests on
scripts/librdkafka-known-failures.txt can be left out of a run whose other
sub-tests must pass.

Usage: patch-librdkafka-tests.py TESTS_DIR   (idempotent)
"""

import sys
from pathlib import Path

MARK = "/* ringlog: RINGLOG_SUBTESTS_SKIP */"

HELPER = MARK + """
static int ringlog_subtest_skipped(const char *name) {
        const char *list = getenv("RINGLOG_SUBTESTS_SKIP");
        char buf[1024];
        char *tok, *save = NULL;
        if (!list || !*list || !name || !*name)
                return 0;
        rd_snprintf(buf, sizeof(buf), "%s", list);
        for (tok = strtok_r(buf, "|", &save); tok;
             tok = strtok_r(NULL, "|", &save))
                if (*tok && strstr(name, tok))
                        return 1;
        return 0;
}

"""

ANCHOR_FN = "int test_sub_start(const char *func,"

ANCHOR_FILTER = """        if (subtests_to_run && !strstr(test_curr->subtest, subtests_to_run)) {
                *test_curr->subtest = '\\0';
                return 0;
        }
"""

SKIP = """        if (ringlog_subtest_skipped(test_curr->subtest)) {
                TEST_SAY(_C_YEL "[ %s: SKIP: RINGLOG_SUBTESTS_SKIP ]\\n",
                         test_curr->subtest);
                *test_curr->subtest = '\\0';
                return 0;
        }
"""


def main() -> int:
    path = Path(sys.argv[1]) / "test.c"
    src = path.read_text()
    if MARK in src:
        return 0
    if src.count(ANCHOR_FN) != 1 or src.count(ANCHOR_FILTER) != 1:
        print(f"{path}: test_sub_start() is not as expected; update {__file__}", file=sys.stderr)
        return 1
    src = src.replace(ANCHOR_FN, HELPER + ANCHOR_FN)
    src = src.replace(ANCHOR_FILTER, ANCHOR_FILTER + SKIP)
    path.write_text(src)
    return 0


if __name__ == "__main__":
    sys.exit(main())
