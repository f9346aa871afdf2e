//! The Prometheus endpoint: HTTP/1.1 served by hyper on shard 0's executor.

use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_lite::{AsyncRead, AsyncWrite};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};

use crate::io::net::{Duplex, Listener};
use crate::shard::Shard;

/// Adapts the IO layer's connection to hyper's IO traits.
struct HyperIo(Duplex);

impl hyper::rt::Read for HyperIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        let mut tmp = [0u8; 8192];
        let want = tmp.len().min(buf.remaining());
        match Pin::new(&mut self.get_mut().0).poll_read(cx, &mut tmp[..want]) {
            Poll::Ready(Ok(n)) => {
                buf.put_slice(&tmp[..n]);
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl hyper::rt::Write for HyperIo {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_close(cx)
    }
}

async fn serve_request(
    shard: Rc<Shard>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    let path = req.uri().path();
    if path != "/metrics" && path != "/" {
        let mut r = Response::new(Full::new(Bytes::from_static(b"not found; try /metrics\n")));
        *r.status_mut() = StatusCode::NOT_FOUND;
        return Ok(r);
    }
    let snaps = shard.collect_metrics().await;
    let body = super::render(&snaps);
    let mut r = Response::new(Full::new(Bytes::from(body)));
    if let Ok(v) = hyper::header::HeaderValue::from_str("text/plain; version=0.0.4; charset=utf-8") {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    Ok(r)
}

/// Serve scrapes until shutdown.
pub async fn serve(shard: Rc<Shard>, listener: Listener) {
    loop {
        let stop = shard.until_shutdown();
        let accepted = futures_lite::future::or(async { Some(listener.accept().await) }, async {
            stop.await;
            None
        })
        .await;
        let conn = match accepted {
            None => return,
            Some(Ok(c)) => c,
            Some(Err(e)) => {
                tracing::warn!("metrics accept failed: {e}");
                continue;
            }
        };
        let s = shard.clone();
        crate::io::executor::spawn_detached(async move {
            let svc = hyper::service::service_fn(move |req| serve_request(s.clone(), req));
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder.header_read_timeout(None).keep_alive(true);
            if let Err(e) = builder.serve_connection(HyperIo(Duplex::from(conn)), svc).await {
                tracing::debug!("metrics connection: {e}");
            }
        });
    }
}
