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
        Self { io, codec: Codec::new().max_size(max_frame_bytes), read_buf, write_buf: BytesMut::new() }
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

    /// Writes every queued frame: one write for all of them when the kernel takes it.
    pub async fn flush(&mut self) -> io::Result<()> {
        while !self.write_buf.is_empty() {
            let written = poll_fn(|cx| Pin::new(&mut self.io).poll_write(cx, &self.write_buf)).await?;
            if written == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            self.write_buf.advance(written);
        }
        self.write_buf = BytesMut::new();
        Ok(())
    }

    pub async fn send_text(&mut self, text: ByteString) -> io::Result<()> {
        self.queue_text(text);
        self.flush().await
    }

    pub async fn ping(&mut self) -> io::Result<()> {
        self.queue(Message::Ping(Bytes::new()));
        self.flush().await
    }

    pub async fn pong(&mut self, payload: Bytes) -> io::Result<()> {
        self.queue(Message::Pong(payload));
        self.flush().await
    }

    /// Sends a close frame and ends the TCP stream (the client's close, if it sends
    /// one, is not waited for).
    pub async fn close(&mut self, reason: Option<CloseReason>) -> io::Result<()> {
        self.queue(Message::Close(reason));
        self.flush().await?;
        self.io.shutdown().await
    }
}
