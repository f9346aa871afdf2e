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
pub struct FrameReader<R> {
    inner: R,
    buf: BytesMut,
    max: usize,
}

const READ_CHUNK: usize = 64 * 1024;

impl<R: AsyncRead + Unpin> FrameReader<R> {
    pub fn new(inner: R, max: usize) -> Self {
        FrameReader { inner, buf: BytesMut::with_capacity(READ_CHUNK), max }
    }

    async fn fill(&mut self, need: usize) -> Result<(), FrameError> {
        while self.buf.len() < need {
            let want = (need - self.buf.len()).max(READ_CHUNK);
            self.buf.reserve(want);
            let start = self.buf.len();
            self.buf.resize(start + want, 0);
            let n = match self.inner.read(&mut self.buf[start..]).await {
                Ok(n) => n,
                Err(e) => {
                    self.buf.truncate(start);
                    return Err(e.into());
                }
            };
            self.buf.truncate(start + n);
            if n == 0 {
                return Err(FrameError::Closed);
            }
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
        self.fill(4 + size as usize).await?;
        let mut frame = self.buf.split_to(4 + size as usize);
        let _ = frame.split_to(4);
        Ok(frame.freeze())
    }
}
