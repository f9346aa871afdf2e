#!/usr/bin/env python3
"""Reads the output of one librdkafka test-runner run (one test) and says
which sections ran and how they ended, for scripts/compat-librdkafka.sh.

A section is a sub-test (SUB_TEST(): "[ <name> ]" when it starts,
"[ <name>: PASS (..s) ]" or "[ <name>: SKIP: .. ]" when it ends) or, in the
few tests that mark their parts by hand without SUB_TEST() (0109), a line
of the same "[ <name> ]" form, which ends where the next one starts.

Usage: compat-sections.py LOGFILE RC [ENTRY...]

RC is the test-runner's exit status (non-zero: the test failed or was
killed). Each ENTRY is a substring of section names (a line of
scripts/librdkafka-known-failures.txt). Prints shell-safe lines:

  failed_section=<name of the section the test failed in, or empty>
  sections_passed=<N>   sections that ran to their end
  sections_skipped=<N>  sub-tests skipped (SUB_TEST_SKIP, RINGLOG_SUBTESTS_SKIP)
  entry_<i>=<state>     per ENTRY (0-based): failed (the test failed in a
                        section matching it), passed (a matching section ran
                        to its end), skipped (matching sections were only
                        skipped) or absent (no section matches)
"""

from __future__ import annotations

import re
import sys

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
# "[0081_admin                  /  1.234s] [ name ]" (the prefix is TEST_SAY's)
SAY = re.compile(r"^\[[^\]]*/\s*[0-9.]+s\] (.*)$")
START = re.compile(r"^\[ (.*) \]$")
PASS = re.compile(r"^\[ (.*): PASS \([0-9.]+s\) \]$")
SKIP = re.compile(r"^\[ (.*): SKIP: .* \]$")
FAILED = re.compile(r'^### Test "([0-9]{4}_[^ "]*)(?: \((.*)\))?" failed at ')


def main() -> int:
    path, rc = sys.argv[1], int(sys.argv[2])
    entries = sys.argv[3:]
    try:
        with open(path, errors="replace") as f:
            lines = [ANSI.sub("", raw).rstrip("\n") for raw in f]
    except OSError:
        lines = []

    order: list[str] = []  # started sections, in order
    state: dict[str, str] = {}  # name -> running | passed | skipped
    failed_in = None
    failure_seen = False
    for line in lines:
        m = FAILED.match(line)
        if m:
            if not failure_seen:
                failure_seen = True
                failed_in = m.group(2)
                if not failed_in:
                    # No sub-test: the hand-marked section that was running.
                    running = [n for n in order if state[n] == "running"]
                    failed_in = running[-1] if running else None
            continue
        m = SAY.match(line)
        if not m:
            continue
        body = m.group(1)
        if PASS.match(body):
            state[PASS.match(body).group(1)] = "passed"
            continue
        if SKIP.match(body):
            name = SKIP.match(body).group(1)
            if name not in state:
                order.append(name)
            state[name] = "skipped"
            continue
        sm = START.match(body)
        if sm and not failure_seen:
            name = sm.group(1)
            # A new hand-marked section ends the previous one.
            for n in order:
                if state[n] == "running" and not re.match(r"^\S+:\d+", n):
                    state[n] = "passed"
            if name not in state:
                order.append(name)
            state[name] = "running"

    if rc != 0 and failed_in is None:
        # Killed (timeout) or crashed without a failure line: the section
        # that was running.
        running = [n for n in order if state[n] == "running"]
        failed_in = running[-1] if running else None
    if rc == 0 and not failure_seen:
        # The test ended well: hand-marked sections still open ended too.
        for n in order:
            if state[n] == "running":
                state[n] = "passed"

    print(f"failed_section={shell_quote(failed_in or '')}")
    print(f"sections_passed={sum(1 for s in state.values() if s == 'passed')}")
    print(f"sections_skipped={sum(1 for s in state.values() if s == 'skipped')}")
    for i, e in enumerate(entries):
        matching = [n for n in order if e in n]
        if failed_in is not None and e in failed_in:
            st = "failed"
        elif any(state[n] != "skipped" and n != failed_in for n in matching):
            st = "passed"
        elif matching and all(state[n] == "skipped" for n in matching):
            st = "skipped"
        else:
            st = "absent"
        print(f"entry_{i}={st}")
    return 0


def shell_quote(s: str) -> str:
    return "'" + s.replace("'", "'\\''") + "'"


if __name__ == "__main__":
    sys.exit(main())
