//! A WebSocket connection that owns its TCP stream once the HTTP upgrade is done.
//!
//! Why not actix-ws: it leaves the socket inside actix-http's HTTP/1 dispatcher, which
//! keeps an 8 KiB read and an 8 KiB write buffer per connection for its life, and
//! every frame crosses two tasks (the socket's, then the dispatcher's through a
//! channel) before it is written. Here the socket's own task encodes its frames and
//! writes them: one wake-up per burst of frames, one write for all of them, and an
//! idle socket holds no buffer at all (they are freed as soon as they are empty).

use std::cell::RefCell;
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use actix_codec::{Decoder, Encoder};
use actix_http::ws::{CloseReason, Codec, Frame, Message, ProtocolError};
use bytes::{Buf, Bytes, BytesMut};
use bytestring::ByteString;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

/// How much one read takes from the kernel at most. The bytes land in a buffer
/// shared by every socket of the thread first, and only what a frame needs is kept
/// per socket.
const READ_CHUNK: usize = 16 * 1024;

thread_local! {
    static READ_SCRATCH: RefCell<Box<[u8]>> = RefCell::new(vec![0; READ_CHUNK].into_boxed_slice());
}

/// The server side of one WebSocket.
pub struct WebSocket {
    io: TcpStream,
    codec: Codec,
    max_frame_bytes: usize,
    /// Bytes read and not yet decoded into a frame (empty, unallocated, when idle).
    read_buf: BytesMut,
    /// Frames encoded and not yet written (empty, unallocated, once written).
    write_buf: BytesMut,
}

impl WebSocket {
    /// Takes over `io` after the 101 went out; `read_ahead` is what the client sent
    /// after its handshake and the HTTP parser had already read. Frames larger than
    /// `max_frame_bytes` are refused.
    pub fn new(io: TcpStream, read_ahead: BytesMut, max_frame_bytes: usize) -> Self {
        // The HTTP parser's buffer is 8 KiB; keep only the bytes, not the capacity.
        let read_buf = if read_ahead.is_empty() { BytesMut::new() } else { BytesMut::from(&read_ahead[..]) };
        Self {
            io,
            codec: Codec::new().max_size(max_frame_bytes),
            max_frame_bytes,
            read_buf,
            write_buf: BytesMut::new(),
        }
    }

    /// The next frame from the client, or `None` once the connection is closed or
    /// broken. Cancel-safe: bytes read before a cancellation stay for the next call.
    pub async fn recv(&mut self) -> Option<Result<Frame, ProtocolError>> {
        loop {
            match self.codec.decode(&mut self.read_buf) {
                Ok(Some(frame)) => {
                    self.release_read_buf();
                    return Some(Ok(frame));
                }
                Ok(None) => {}
                Err(error) => return Some(Err(error)),
            }
            // The codec checks a frame's size only once all of it is here: a frame
            // announced larger than allowed is refused from its header instead, so
            // what one socket buffers stays within a frame's limit.
            if declared_length(&self.read_buf).is_some_and(|length| length > self.max_frame_bytes as u64) {
                return Some(Err(ProtocolError::Overflow));
            }
            match poll_fn(|cx| self.poll_read_some(cx)).await {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }

    /// Reads what the kernel has (at least one byte) into `read_buf`.
    fn poll_read_some(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        READ_SCRATCH.with_borrow_mut(|scratch| {
            let mut chunk = ReadBuf::new(scratch);
            ready!(Pin::new(&mut self.io).poll_read(cx, &mut chunk))?;
            self.read_buf.extend_from_slice(chunk.filled());
            Poll::Ready(Ok(chunk.filled().len()))
        })
    }

    /// An empty buffer gives its memory back (the frame just decoded may still share
    /// it, and frees it when dropped).
    fn release_read_buf(&mut self) {
        if self.read_buf.is_empty() {
            self.read_buf = BytesMut::new();
        }
    }

    /// Queues a text frame; [`flush`](Self::flush) writes it.
    pub fn queue_text(&mut self, text: ByteString) {
        self.queue(Message::Text(text));
    }

    fn queue(&mut self, message: Message) {
        // Encoding a whole (not continued) message cannot fail.
        if let Err(error) = self.codec.encode(message, &mut self.write_buf) {
            tracing::error!(%error, "a WebSocket frame could not be encoded");
        }
    }

    pub fn queue_ping(&mut self) {
        self.queue(Message::Ping(Bytes::new()));
    }

    pub fn queue_pong(&mut self, payload: Bytes) {
        self.queue(Message::Pong(payload));
    }

    pub fn queue_close(&mut self, reason: Option<CloseReason>) {
        self.queue(Message::Close(reason));
    }

    /// Whether queued frames wait to be written.
    pub fn has_unwritten(&self) -> bool {
        !self.write_buf.is_empty()
    }

    /// Writes as much of the queued frames as the kernel takes now (all of them, in
    /// one system call, unless the client reads slower than they come); waits until
    /// it takes some. The buffer's memory goes back once it is all written.
    pub async fn write_some(&mut self) -> io::Result<()> {
        if self.write_buf.is_empty() {
            return Ok(());
        }
        let written = poll_fn(|cx| Pin::new(&mut self.io).poll_write(cx, &self.write_buf)).await?;
        if written == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        self.write_buf.advance(written);
        if self.write_buf.is_empty() {
            self.write_buf = BytesMut::new();
        }
        Ok(())
    }

    /// Ends the TCP stream (after a close frame was written; the client's close, if
    /// it sends one, is not waited for).
    pub async fn shutdown(&mut self) -> io::Result<()> {
        self.io.shutdown().await
    }
}

/// The payload length a frame's header announces, once the header's length bytes
/// are here (RFC 6455, section 5.2).
fn declared_length(header: &[u8]) -> Option<u64> {
    let short = header.get(1)? & 0x7f;
    match short {
        126 => Some(u64::from(u16::from_be_bytes(header.get(2..4)?.try_into().ok()?))),
        127 => Some(u64::from_be_bytes(header.get(2..10)?.try_into().ok()?)),
        short => Some(u64::from(short)),
    }
}

#[cfg(test)]
mod tests {
    use super::declared_length;

    #[test]
    fn a_frames_length_is_read_from_its_header() {
        assert_eq!(declared_length(&[0x81]), None);
        assert_eq!(declared_length(&[0x81, 0x85]), Some(5));
        assert_eq!(declared_length(&[0x81, 0xfe, 0x01]), None);
        assert_eq!(declared_length(&[0x81, 0xfe, 0x01, 0x00]), Some(256));
        assert_eq!(declared_length(&[0x82, 0xff, 0, 0, 1, 0, 0, 0, 0]), None);
        assert_eq!(declared_length(&[0x82, 0xff, 0, 0, 1, 0, 0, 0, 0, 0]), Some(1 << 40));
    }
}
