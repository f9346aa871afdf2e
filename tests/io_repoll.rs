//! Every long-lived future of the IO layer survives being polled again and
//! again without a wake-up (what happens when it is raced against a timer,
//! a shutdown signal or other futures in a `select`).
//!
//! glommio 0.9 keeps a waker clone per pending poll of some futures; the
//! 32,768th clone overflows the task's reference count and panics the
//! executor. The broker stopped accepting connections after 27 minutes that
//! way (32,767 × a 50 ms shutdown poll). Each test below polls one future
//! 100,000 times with the real task's waker on a real executor, then checks
//! that it still completes when its event comes.

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use ringlog::io::executor::{start_executor, ExecutorSpec};
use ringlog::io::mesh::MeshBuilder;
use ringlog::io::net::{connect, Listener};
use ringlog::io::notify::Notify;
use ringlog::io::signal::Flag;
use ringlog::io::sync::Semaphore;

const POLLS: usize = 100_000;

fn spec(name: &str) -> ExecutorSpec {
    ExecutorSpec {
        name: name.into(),
        cpu: None,
        io_memory: 1 << 20,
        spin_before_park: None,
    }
}

fn run<F, Fut>(f: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + 'static,
{
    start_executor(spec("repoll"), f)
        .expect("executor starts")
        .join()
        .expect("the executor did not panic");
}

/// Poll `fut` POLLS times with the current task's waker; it must stay
/// pending throughout.
async fn hammer<F: Future + Unpin>(fut: &mut F) {
    futures::future::poll_fn(|cx| {
        for i in 0..POLLS {
            assert!(Pin::new(&mut *fut).poll(cx).is_pending(), "completed early at poll {i}");
        }
        Poll::Ready(())
    })
    .await
}

#[test]
fn accept_survives_repolls() {
    run(|| async {
        let l = Listener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = l.local_addr().unwrap();
        let mut accept = Box::pin(l.accept());
        hammer(&mut accept).await;
        let client = ringlog::io::spawn(async move { connect(addr).await.map(|_| ()) });
        let conn = accept.await.expect("accepted after the hammering");
        assert!(conn.peer_addr().is_some());
        client.await.expect("connected");
    });
}

#[test]
fn reads_and_writes_survive_repolls() {
    run(|| async {
        let l = Listener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = l.local_addr().unwrap();
        let client = ringlog::io::spawn(async move { connect(addr).await });
        let server = l.accept().await.unwrap();
        let client = client.await.unwrap();
        let (mut srd, mut swr) = server.split();
        let (mut crd, mut cwr) = client.split();

        // A read with nothing to read.
        let mut buf = [0u8; 16];
        {
            let mut read = Box::pin(srd.read(&mut buf));
            hammer(&mut read).await;
            cwr.write_all(b"hello").await.unwrap();
            let n = read.await.unwrap();
            assert!(n > 0);
        }

        // A write to a peer that does not read: fill the socket buffers
        // until a write stays pending, then hammer it.
        let chunk = vec![7u8; 1 << 16];
        let mut total = 0usize;
        loop {
            let mut w = Box::pin(swr.write(&chunk));
            let pending = futures::future::poll_fn(|cx| Poll::Ready(w.as_mut().poll(cx))).await;
            match pending {
                Poll::Ready(r) => total += r.unwrap(),
                Poll::Pending => {
                    hammer(&mut w).await;
                    // Drain on the client side; the write completes.
                    let drain = ringlog::io::spawn(async move {
                        let mut sink = vec![0u8; 1 << 16];
                        let mut got = 0usize;
                        while got < total + 1 {
                            let n = crd.read(&mut sink).await.unwrap();
                            assert!(n > 0);
                            got += n;
                        }
                    });
                    assert!(w.await.unwrap() > 0);
                    drain.await;
                    break;
                }
            }
        }
    });
}

#[test]
fn timers_and_local_signals_survive_repolls() {
    run(|| async {
        let mut sleep = Box::pin(ringlog::io::time::sleep(Duration::from_millis(300)));
        hammer(&mut sleep).await;
        sleep.await;

        let n = Notify::new();
        let mut l = Box::pin(n.listen());
        hammer(&mut l).await;
        assert_eq!(n.waiting(), 1);
        n.notify_all();
        l.await;

        let sem = Semaphore::new(1);
        let held = sem.try_acquire(1).unwrap();
        let mut acq = Box::pin(sem.acquire(1));
        hammer(&mut acq).await;
        assert_eq!(sem.waiting(), 1);
        drop(held);
        drop(acq.await);

        let flag = Flag::new();
        let mut w = Box::pin(flag.wait_notified());
        hammer(&mut w).await;
        let f2 = flag.clone();
        std::thread::spawn(move || f2.set()).join().unwrap();
        w.await;
    });
}

#[test]
fn mesh_receive_survives_repolls() {
    let mesh: MeshBuilder<u64> = MeshBuilder::full(2, 16);
    let go = Flag::new();
    let (m0, g0) = (mesh.clone(), go.clone());
    let a = start_executor(spec("mesh-0"), move || async move {
        let (_tx, rx) = m0.join(0).await.unwrap();
        let (_, rx) = rx.into_iter().next().unwrap();
        let mut recv = Box::pin(rx.recv());
        hammer(&mut recv).await;
        g0.set();
        assert_eq!(recv.await, Some(42));
    })
    .unwrap();
    let b = start_executor(spec("mesh-1"), move || async move {
        let (tx, _rx) = mesh.join(1).await.unwrap();
        go.wait().await;
        tx.send_to(0, 42).await.unwrap();
    })
    .unwrap();
    a.join().expect("receiver did not panic");
    b.join().expect("sender did not panic");
}
