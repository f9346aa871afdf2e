"""The suite's own machinery, without a broker: the broker-log checks of the
fixtures and the librdkafka log reader of scripts/compat-librdkafka.sh."""

from __future__ import annotations

import subprocess
import sys

from conftest import LOG_PROBLEM, REPO_ROOT, io_mode_from_log

SECTIONS = REPO_ROOT / "scripts" / "lib" / "compat-sections.py"


def test_io_mode_from_log_is_lenient():
    assert io_mode_from_log("") == "unknown"
    assert io_mode_from_log("INFO starting ringlog\n") == "unknown"
    line = "2026-01-01T00:00:00Z  INFO storage io mode: requested=direct effective=buffered dir=/tmp/x\n"
    assert io_mode_from_log(line) == "buffered"
    # tracing's structured fields, colours stripped or quoted
    assert io_mode_from_log('INFO storage io mode requested="direct" effective="direct" dir="/d"') == "direct"
    # the last start counts
    assert io_mode_from_log(line + line.replace("effective=buffered", "effective=direct")) == "direct"


def test_log_problem_markers():
    assert LOG_PROBLEM.search("thread 'shard-0-1' panicked at src/log/partition.rs:10:5:")
    assert LOG_PROBLEM.search("ERROR invariant violated: high watermark 10 > log end 9")
    assert not LOG_PROBLEM.search("INFO clean shutdown complete")


def sections(log: str, rc: int, *entries: str, tmp_path) -> dict[str, str]:
    path = tmp_path / "out.log"
    path.write_text(log)
    out = subprocess.run([sys.executable, str(SECTIONS), str(path), str(rc), *entries], capture_output=True,
                         text=True, check=True).stdout
    return dict(line.split("=", 1) for line in out.splitlines())


def say(text: str) -> str:
    return f"\x1b[36m[0081_admin                  /  1.234s] \x1b[35m{text}\n"


def test_compat_sections_sub_tests(tmp_path):
    log = (
        say("[ do_test_A:10: one ]")
        + say("[ do_test_A:10: one: PASS (1.00s) ]")
        + say("[ do_test_B:20: SKIP: RINGLOG_SUBTESTS_SKIP ]")
        + say("[ do_test_C:30: two ]")
        + '\x1b[31m### Test "0081_admin (do_test_C:30: two (x))" failed at 0081-admin.c:1:f() at now: ###\n'
        + '### Test "<MAIN>" failed at test.c:1:g() at now: ###\n'
    )
    r = sections(log, 1, "do_test_C", "do_test_A", "do_test_B", "nothing", tmp_path=tmp_path)
    assert r["failed_section"] == "'do_test_C:30: two (x)'"
    assert (r["sections_passed"], r["sections_skipped"]) == ("1", "1")
    assert [r[f"entry_{i}"] for i in range(4)] == ["failed", "passed", "skipped", "absent"]


def test_compat_sections_hand_marked_parts(tmp_path):
    # 0109 marks its parts with "[ ... ]" lines but no SUB_TEST(): a part
    # ends where the next begins; a failure without a sub-test name is in
    # the part that was running.
    log = (
        say("[ Test a=true unauth=false ]")
        + say("[ Test a=false unauth=false ]")
        + say("[ Test a=true unauth=true ]")
        + '### Test "0109_auto_create_topics" failed at test.c:5043:test_kafka_cmd() at now: ###\n'
    )
    r = sections(log, 1, "unauth=true", "a=false", tmp_path=tmp_path)
    assert r["failed_section"] == "'Test a=true unauth=true'"
    assert r["sections_passed"] == "2"
    assert (r["entry_0"], r["entry_1"]) == ("failed", "passed")
    # Killed by the timeout: the running part is the failing one.
    r = sections(say("[ Test a=true unauth=false ]") + say("[ Test a=true unauth=true ]"), 124, "unauth=true",
                 tmp_path=tmp_path)
    assert r["entry_0"] == "failed"
    # A run that passes: every part passed, so a listed one is stale.
    r = sections(say("[ Test a=true unauth=false ]") + say("[ Test a=true unauth=true ]"), 0, "unauth=true",
                 tmp_path=tmp_path)
    assert (r["failed_section"], r["entry_0"]) == ("''", "passed")
