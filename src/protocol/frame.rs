//! Length-prefixed request frames, with the size checked before any
//! allocation and memory that grows only with the bytes that arrive.
//!
//! A frame is read in steps so that the connection can reserve memory as
//! it arrives: [`FrameReader::header`] returns the announced size (checked
//! against `socket.request.max.bytes`), [`FrameReader::fill_within`] reads
//! on while the buffer may grow within a limit (the connection's
//! reservation), [`FrameReader::body`] hands out the whole frame. Nothing
//! allocates for bytes that have not arrived: the buffer grows in steps of
//! at most twice what has been received (at least one 64 KiB read chunk),
//! never to the announced size up front, so a client that announces 100 MB
//! and sends slowly pins about what it sent.
//!
//! Memory is exact rather than amortized: growth reserves exactly the new
//! size (no hidden doubling of the capacity), a frame of 64 KiB or more
//! keeps the buffer it was received into (no copy; the frame pins at most a
//! read chunk beyond itself), smaller frames are copied out so they pin
//! only their own bytes, and a connection with nothing buffered holds no
//! buffer at all while it waits for its next request.

use std::future::poll_fn;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_lite::AsyncRead;

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("connection closed")]
    Closed,
    #[error("frame of {0} bytes exceeds socket.request.max.bytes")]
    TooLarge(i64),
    #[error("invalid frame size {0}")]
    Invalid(i32),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

/// Reads frames off a connection.
///
/// `buf[start..filled]` holds received bytes not yet handed out;
/// `buf[filled..]` is zeroed spare room that reads go into (zeroed once when
/// the buffer grows, not on every read).
pub struct FrameReader<R> {
    inner: R,
    buf: Vec<u8>,
    start: usize,
    filled: usize,
    max: usize,
    received: u64,
}

/// Reads ask for at least this much room (and read ahead this far).
pub const READ_CHUNK: usize = 64 * 1024;

/// Frames smaller than this are copied out of the read buffer; larger ones
/// take the buffer with them.
const COPY_BELOW: usize = READ_CHUNK;

/// Size prefix of a frame.
const PREFIX: usize = 4;

impl<R: AsyncRead + Unpin> FrameReader<R> {
    pub fn new(inner: R, max: usize) -> Self {
        FrameReader {
            inner,
            buf: Vec::new(),
            start: 0,
            filled: 0,
            max,
            received: 0,
        }
    }

    /// Bytes received so far (all frames).
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Received bytes not yet returned as frames.
    pub fn buffered(&self) -> usize {
        self.filled - self.start
    }

    /// Memory the read buffer holds now.
    pub fn buffer_capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// Wait for the next frame's size prefix and return the announced size
    /// of its payload. Nothing is consumed: calling it again (or after it
    /// was cancelled) returns the same size.
    pub async fn header(&mut self) -> Result<usize, FrameError> {
        self.fill(PREFIX).await?;
        let b = &self.buf[self.start..self.start + PREFIX];
        let size = i32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        if size < 8 {
            return Err(FrameError::Invalid(size));
        }
        if size as usize > self.max {
            return Err(FrameError::TooLarge(size as i64));
        }
        Ok(size as usize)
    }

    /// Read the payload of the frame whose header [`Self::header`] returned
    /// (cancel-safe: bytes read so far stay buffered).
    pub async fn body(&mut self) -> Result<Bytes, FrameError> {
        let size = self.header().await?;
        let total = PREFIX + size;
        self.fill(total).await?;
        Ok(self.take(total))
    }

    /// Read more of the frame whose header [`Self::header`] returned,
    /// letting the read buffer grow to at most `limit` bytes (never below
    /// one read chunk): true once the frame is whole (then [`Self::body`]
    /// returns it at once), false when it needs more room than `limit`
    /// (nothing more is read until the caller allows more). Cancel-safe.
    ///
    /// This is how a connection reserves a frame's memory as its bytes
    /// arrive rather than at its announced size.
    pub async fn fill_within(&mut self, limit: usize) -> Result<bool, FrameError> {
        let size = self.header().await?;
        let total = PREFIX + size;
        poll_fn(|cx| self.poll_fill(cx, total, limit)).await
    }

    /// The next frame's payload (without the size prefix).
    pub async fn next(&mut self) -> Result<Bytes, FrameError> {
        self.header().await?;
        self.body().await
    }

    /// Hand out `buf[start..start+total]` (complete) minus its prefix.
    fn take(&mut self, total: usize) -> Bytes {
        let end = self.start + total;
        if total < COPY_BELOW {
            let frame = Bytes::copy_from_slice(&self.buf[self.start + PREFIX..end]);
            self.start = end;
            if self.start == self.filled {
                self.start = 0;
                self.filled = 0;
            }
            return frame;
        }
        // A large frame keeps the buffer; bytes after it (the start of the
        // next frame, at most a read chunk) move to a new one.
        let rest = self.filled - end;
        let mut next = Vec::new();
        if rest > 0 {
            next = vec![0u8; rest.max(READ_CHUNK)];
            next[..rest].copy_from_slice(&self.buf[end..self.filled]);
        }
        let mut whole = std::mem::replace(&mut self.buf, next);
        whole.truncate(end);
        let frame = Bytes::from(whole).slice(self.start + PREFIX..end);
        self.start = 0;
        self.filled = rest;
        frame
    }

    async fn fill(&mut self, need: usize) -> Result<(), FrameError> {
        poll_fn(|cx| self.poll_fill(cx, need, usize::MAX)).await.map(|_| ())
    }

    /// Read until `need` bytes are buffered (true), or until the buffer is
    /// full and may not grow past `limit` (false).
    fn poll_fill(&mut self, cx: &mut Context<'_>, need: usize, limit: usize) -> Poll<Result<bool, FrameError>> {
        while self.buffered() < need {
            if !self.make_room(need, limit) {
                return Poll::Ready(Ok(false));
            }
            match Pin::new(&mut self.inner).poll_read(cx, &mut self.buf[self.filled..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(FrameError::Closed)),
                Poll::Ready(Ok(n)) => {
                    self.filled += n;
                    self.received += n as u64;
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e.into())),
                Poll::Pending => {
                    if self.buffered() == 0 {
                        // Nothing buffered and nothing to read: an idle
                        // connection keeps no buffer while it waits.
                        self.buf = Vec::new();
                        self.start = 0;
                        self.filled = 0;
                    }
                    return Poll::Pending;
                }
            }
        }
        Poll::Ready(Ok(true))
    }

    /// Make sure there is spare room after `filled`, growing towards `need`
    /// buffered bytes by at most a doubling of what was received, and to
    /// at most max(`limit`, one read chunk) bytes. False when there is no
    /// room and the limit forbids growing.
    fn make_room(&mut self, need: usize, limit: usize) -> bool {
        if self.filled < self.buf.len() {
            return true;
        }
        if self.start > 0 {
            // Move the unconsumed bytes (the start of one frame) to the front.
            self.buf.copy_within(self.start..self.filled, 0);
            self.filled -= self.start;
            self.start = 0;
            if self.filled < self.buf.len() {
                return true;
            }
        }
        let have = self.filled;
        let target = need
            .max(have + READ_CHUNK)
            .min((2 * have).max(have + READ_CHUNK))
            .min(limit.max(READ_CHUNK));
        if target <= self.buf.len() {
            return false;
        }
        // Exactly `target`: Vec::resize alone would round the capacity up to
        // a doubling of the old one.
        self.buf.reserve_exact(target - self.buf.len());
        self.buf.resize(target, 0);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;

    fn frame(body: &[u8]) -> Vec<u8> {
        let mut v = (body.len() as i32).to_be_bytes().to_vec();
        v.extend_from_slice(body);
        v
    }

    /// Hands out its input in pieces of at most `step` bytes, then Pending
    /// (or EOF when `eof`), recording the largest buffer it was asked to
    /// fill and the reader's buffer capacity at each read.
    struct Trickle {
        data: Vec<u8>,
        pos: usize,
        step: usize,
        eof: bool,
    }

    impl AsyncRead for Trickle {
        fn poll_read(mut self: Pin<&mut Self>, _cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<std::io::Result<usize>> {
            let left = self.data.len() - self.pos;
            if left == 0 {
                return if self.eof { Poll::Ready(Ok(0)) } else { Poll::Pending };
            }
            let n = left.min(self.step).min(buf.len());
            let pos = self.pos;
            buf[..n].copy_from_slice(&self.data[pos..pos + n]);
            self.pos += n;
            Poll::Ready(Ok(n))
        }
    }

    fn noop_cx() -> Context<'static> {
        Context::from_waker(std::task::Waker::noop())
    }

    #[test]
    fn frames_split_across_reads_and_sizes_checked() {
        futures_lite::future::block_on(async {
            let mut input = frame(b"0123456789");
            input.extend(frame(&[7u8; 100_000]));
            input.extend(frame(b"abcdefgh"));
            let mut r = FrameReader::new(&input[..], 1 << 20);
            assert_eq!(&r.next().await.unwrap()[..], b"0123456789");
            assert_eq!(r.next().await.unwrap().len(), 100_000);
            assert_eq!(&r.next().await.unwrap()[..], b"abcdefgh");
            assert!(matches!(r.next().await, Err(FrameError::Closed)));

            let big = (2_000_000_000i32).to_be_bytes();
            let mut r = FrameReader::new(&big[..], 1 << 20);
            assert!(matches!(r.next().await, Err(FrameError::TooLarge(_))));
            let neg = (-5i32).to_be_bytes();
            let mut r = FrameReader::new(&neg[..], 1 << 20);
            assert!(matches!(r.next().await, Err(FrameError::Invalid(-5))));
            // A frame announced at 100 MB of which 10 bytes arrive.
            let mut announced = (100_000_000i32).to_be_bytes().to_vec();
            announced.extend_from_slice(b"0123456789");
            let mut r = FrameReader::new(&announced[..], 200 << 20);
            assert!(matches!(r.next().await, Err(FrameError::Closed)));
            assert!(
                r.buffer_capacity() <= 2 * READ_CHUNK,
                "buffer grew to {} bytes",
                r.buffer_capacity()
            );
            let torn = frame(b"0123456789");
            let mut r = FrameReader::new(&torn[..9], 1 << 20);
            assert!(matches!(r.next().await, Err(FrameError::Closed)));
        });
    }

    #[test]
    fn buffer_grows_with_arrivals_never_to_the_announced_size() {
        // 100 MB announced; bytes arrive 10 KiB per read. After each read the
        // buffer holds at most max(2 x received, received + one chunk).
        let announced = 100_000_000usize;
        let mut data = (announced as i32).to_be_bytes().to_vec();
        data.extend(std::iter::repeat_n(3u8, 3 << 20));
        let mut t = Trickle {
            data,
            pos: 0,
            step: 10 << 10,
            eof: false,
        };
        let mut r = FrameReader::new(&mut t, 200 << 20);
        let mut cx = noop_cx();
        let mut body = Box::pin(r.body());
        assert!(body.as_mut().poll(&mut cx).is_pending(), "only 3 MiB of 100 MB arrived");
        drop(body);
        let got = r.received() as usize;
        assert_eq!(got, 4 + (3 << 20));
        let cap = r.buffer_capacity();
        assert!(
            cap <= (2 * got).max(got + READ_CHUNK),
            "capacity {cap} for {got} received bytes"
        );
        assert!(cap >= got);
        // Cancel-safe: the header is still there and the bytes stay buffered.
        assert_eq!(r.buffered(), got);
        let mut h = Box::pin(r.header());
        match h.as_mut().poll(&mut cx) {
            Poll::Ready(Ok(n)) => assert_eq!(n, announced),
            other => panic!("header: {other:?}"),
        }
    }

    #[test]
    fn growth_is_exact_and_the_frame_keeps_its_buffer() {
        futures_lite::future::block_on(async {
            // One 1 MiB frame followed by a small one, read 100 KiB at a time.
            let big: Vec<u8> = (0..(1u32 << 20)).map(|i| i as u8).collect();
            let mut data = frame(&big);
            data.extend(frame(b"next-frame"));
            let mut t = Trickle {
                data,
                pos: 0,
                step: 100 << 10,
                eof: true,
            };
            let mut r = FrameReader::new(&mut t, 8 << 20);
            let f = r.next().await.unwrap();
            assert_eq!(&f[..], &big[..]);
            // The frame took the buffer; at most a chunk of the next frame
            // was read ahead into a fresh one.
            assert!(r.buffered() <= READ_CHUNK);
            assert_eq!(&r.next().await.unwrap()[..], b"next-frame");
            assert!(matches!(r.next().await, Err(FrameError::Closed)));
        });
    }

    #[test]
    fn fill_within_grows_the_buffer_only_as_far_as_allowed() {
        // A 1 MiB frame, all of it available at once.
        let big: Vec<u8> = (0..(1u32 << 20)).map(|i| (i % 251) as u8).collect();
        let mut t = Trickle {
            data: frame(&big),
            pos: 0,
            step: usize::MAX,
            eof: false,
        };
        let mut r = FrameReader::new(&mut t, 8 << 20);
        let mut cx = noop_cx();
        let mut limit = 0;
        loop {
            let mut f = Box::pin(r.fill_within(limit));
            let done = match f.as_mut().poll(&mut cx) {
                Poll::Ready(Ok(done)) => done,
                other => panic!("fill_within: {other:?}"),
            };
            drop(f);
            // Never past the limit (one read chunk always allowed).
            assert!(
                r.buffer_capacity() <= limit.max(READ_CHUNK),
                "buffer {} with limit {limit}",
                r.buffer_capacity()
            );
            if done {
                break;
            }
            assert_eq!(r.buffered(), r.buffer_capacity(), "stops only when the buffer is full");
            limit = 2 * limit.max(READ_CHUNK);
        }
        let mut b = Box::pin(r.body());
        match b.as_mut().poll(&mut cx) {
            Poll::Ready(Ok(f)) => assert_eq!(&f[..], &big[..]),
            other => panic!("body: {other:?}"),
        }
    }

    #[test]
    fn small_frames_are_copied_and_an_idle_reader_holds_no_buffer() {
        // Many small frames in one read: each comes out on its own
        // allocation (a cached slice of one cannot pin the read buffer).
        let mut data = Vec::new();
        for i in 0..100u8 {
            data.extend(frame(&[i; 20]));
        }
        let mut t = Trickle {
            data,
            pos: 0,
            step: usize::MAX,
            eof: false,
        };
        let mut r = FrameReader::new(&mut t, 1 << 20);
        let mut cx = noop_cx();
        for i in 0..100u8 {
            let mut f = Box::pin(r.next());
            match f.as_mut().poll(&mut cx) {
                Poll::Ready(Ok(b)) => assert_eq!(&b[..], &[i; 20]),
                other => panic!("frame {i}: {other:?}"),
            }
        }
        // Nothing left to read: pending, and the buffer is gone.
        let mut f = Box::pin(r.next());
        assert!(f.as_mut().poll(&mut cx).is_pending());
        drop(f);
        assert_eq!(r.buffer_capacity(), 0);
        assert_eq!(r.buffered(), 0);
    }
}
