//! Length-prefixed request frames, with the size checked before any
//! allocation.

use bytes::{Bytes, BytesMut};
use futures_lite::{AsyncRead, AsyncReadExt};

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

/// Reads frames off a connection, reusing one buffer.
///
/// `buf[..filled]` holds received bytes; `buf[filled..]` is initialized
/// spare room that reads go into, so memory is zeroed once when the buffer
/// grows rather than on every read.
pub struct FrameReader<R> {
    inner: R,
    buf: BytesMut,
    filled: usize,
    max: usize,
}

const READ_CHUNK: usize = 64 * 1024;

impl<R: AsyncRead + Unpin> FrameReader<R> {
    pub fn new(inner: R, max: usize) -> Self {
        FrameReader {
            inner,
            buf: BytesMut::new(),
            filled: 0,
            max,
        }
    }

    async fn fill(&mut self, need: usize) -> Result<(), FrameError> {
        while self.filled < need {
            if self.buf.len() == self.filled {
                // Grow with the bytes that arrive, not to the size a frame
                // announces: a client announcing 100 MB and sending slowly
                // pins about twice what it sent. Doubling keeps the copies
                // of a large frame amortized.
                let grow = self.filled.max(READ_CHUNK);
                let target = (self.filled + grow).min(need.max(self.filled + READ_CHUNK));
                self.buf.resize(target, 0);
            }
            let n = self.inner.read(&mut self.buf[self.filled..]).await?;
            if n == 0 {
                return Err(FrameError::Closed);
            }
            self.filled += n;
        }
        Ok(())
    }

    /// The next frame's payload (without the size prefix).
    pub async fn next(&mut self) -> Result<Bytes, FrameError> {
        self.fill(4).await?;
        let size = i32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]);
        if size < 8 {
            return Err(FrameError::Invalid(size));
        }
        if size as usize > self.max {
            return Err(FrameError::TooLarge(size as i64));
        }
        let total = 4 + size as usize;
        self.fill(total).await?;
        let mut frame = self.buf.split_to(total);
        self.filled -= total;
        let _ = frame.split_to(4);
        Ok(frame.freeze())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(body: &[u8]) -> Vec<u8> {
        let mut v = (body.len() as i32).to_be_bytes().to_vec();
        v.extend_from_slice(body);
        v
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
            assert!(r.buf.len() <= 2 * READ_CHUNK, "buffer grew to {} bytes", r.buf.len());
            let torn = frame(b"0123456789");
            let mut r = FrameReader::new(&torn[..9], 1 << 20);
            assert!(matches!(r.next().await, Err(FrameError::Closed)));
        });
    }
}
