//! `ringlog bench` against the real broker binary: a tiny fixed-rate run
//! must produce and consume the same messages and report no errors.

use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_ringlog");

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().expect("local address").port()
}

/// A broker process, stopped (SIGTERM, then SIGKILL) when dropped.
struct Broker {
    child: Child,
    addr: String,
}

impl Broker {
    fn start(data: &Path) -> Broker {
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let child = Command::new(BIN)
            .args(["start", "--shards", "2", "--log-level", "warn", "--listen", &addr])
            .arg("--advertised-listener")
            .arg(&addr)
            .arg("--data-dir")
            .arg(data)
            .stdout(Stdio::null())
            .spawn()
            .expect("start the broker");
        let mut broker = Broker { child, addr };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = broker.child.try_wait() {
                panic!("broker exited during start-up: {status}");
            }
            if TcpStream::connect(&broker.addr).is_ok() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "broker did not listen on {} within 30 s",
                broker.addr
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        broker
    }

    fn stop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.stop();
    }
}

#[test]
fn tiny_fixed_rate_run_produces_and_consumes_everything() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("out");
    let mut broker = Broker::start(&dir.path().join("data"));

    let output = Command::new(BIN)
        .args(["bench", "--bootstrap", &broker.addr])
        .args(["--topic", "bench-smoke", "--partitions", "2"])
        .args(["--producers", "1", "--consumers", "1"])
        .args(["--rate", "200KB", "--message-size", "200", "--acks", "all"])
        .args(["--duration", "2", "--warmup", "0", "--quiet"])
        .arg("--out")
        .arg(&out)
        .output()
        .expect("run ringlog bench");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "ringlog bench failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    assert!(stdout.contains("result: ok"), "{stdout}");

    let text = std::fs::read_to_string(out.join("summary.json")).expect("summary.json written");
    let s: serde_json::Value = serde_json::from_str(&text).expect("summary.json is JSON");
    let produced = s["produce"]["total_messages"].as_u64().expect("produced count");
    let consumed = s["consume"]["total_messages"].as_u64().expect("consumed count");
    assert!(produced > 0, "nothing produced: {text}");
    assert_eq!(consumed, produced, "consumed != produced: {text}");
    assert_eq!(s["ok"], true, "{text}");
    assert_eq!(s["errors"].as_array().map(Vec::len), Some(0), "{text}");
    assert_eq!(s["error_codes"].as_object().map(|o| o.len()), Some(0), "{text}");
    assert!(s["produce_latency_ms"]["count"].as_u64().unwrap_or(0) > 0, "{text}");
    assert!(s["e2e_latency_ms"]["count"].as_u64().unwrap_or(0) > 0, "{text}");
    for hgrm in ["produce-latency.hgrm", "e2e-latency.hgrm"] {
        let h = std::fs::read_to_string(out.join(hgrm)).expect("histogram written");
        assert!(h.contains("Percentile"), "{hgrm}: {h}");
    }
    broker.stop();
}

#[test]
fn unreachable_broker_is_a_clear_error() {
    let port = free_port(); // nothing listens there
    let output = Command::new(BIN)
        .args(["bench", "--bootstrap", &format!("127.0.0.1:{port}"), "--duration", "1"])
        .output()
        .expect("run ringlog bench");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("cannot connect"), "{stderr}");
}
