//! A WebSocket connection that owns its TCP stream once the HTTP upgrade is done.
//!
//! Why not actix-ws: it leaves the socket inside actix-http's HTTP/1 dispatcher, which
//! keeps an 8 KiB read and an 8 KiB write buffer per connection for its life, and
//! every frame crosses two tasks (the socket's, then the dispatcher's through a
//! channel) before it is written. Here the socket's own task writes its frames: one
//! wake-up per burst of frames, one vectored write for all of them, and an idle
//! socket holds no buffer at all (they are freed as soon as they are empty).
//!
//! A large text frame goes out as its header and the payload it was given, shared,
//! not copied: an event's frame is made once for all of a scope's sockets, and a
//! socket behind on a burst holds references to those, not copies of its own. Small
//! frames are copied together into one piece (cheaper than a piece each).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::poll_fn;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use actix_codec::{Decoder, Encoder};
use actix_http::ws::{CloseReason, Codec, Frame, Message, ProtocolError};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use bytestring::ByteString;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

/// How much one read takes from the kernel at most. The bytes land in a buffer
/// shared by every socket of the thread first, and only what a frame needs is kept
/// per socket.
const READ_CHUNK: usize = 16 * 1024;

/// At most this many pieces go in one write.
const PIECES_PER_WRITE: usize = 64;
/// A text payload up to this size is copied into the frames around it; a larger one
/// is written from where it is.
const COPIED_PAYLOAD_BYTES: usize = 1024;
/// At most this much is copied per socket until its queue is written: past it, small
/// payloads too are written from the event's shared bytes (a socket behind on a long
/// burst then holds references, not a copy of the burst).
const COPIED_BYTES: usize = 16 * 1024;

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
    /// What is queued and not yet written, in order: pieces of frames, then
    /// `pending` (both empty, unallocated, once written).
    unwritten: VecDeque<Bytes>,
    /// Frames (and the header of a large one) encoded after the last piece.
    pending: BytesMut,
    /// Payload bytes copied since the queue was last empty.
    copied: usize,
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
            unwritten: VecDeque::new(),
            pending: BytesMut::new(),
            copied: 0,
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

    /// Queues a text frame; [`write_some`](Self::write_some) writes it.
    pub fn queue_text(&mut self, text: ByteString) {
        let payload = text.into_bytes();
        put_text_frame_header(&mut self.pending, payload.len());
        if payload.len() <= COPIED_PAYLOAD_BYTES && self.copied + payload.len() <= COPIED_BYTES {
            self.copied += payload.len();
            self.pending.extend_from_slice(&payload);
        } else {
            self.seal_pending();
            self.unwritten.push_back(payload);
        }
    }

    /// A control frame (small): encoded whole.
    fn queue(&mut self, message: Message) {
        // Encoding a whole (not continued) message cannot fail.
        if let Err(error) = self.codec.encode(message, &mut self.pending) {
            tracing::error!(%error, "a WebSocket frame could not be encoded");
        }
    }

    /// Makes what is pending a piece of its own, behind the others.
    fn seal_pending(&mut self) {
        if !self.pending.is_empty() {
            self.unwritten.push_back(std::mem::take(&mut self.pending).freeze());
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
        !self.unwritten.is_empty() || !self.pending.is_empty()
    }

    /// Writes as much of the queued frames as the kernel takes now (all of them, in
    /// one system call, unless there are many or the client reads slower than they
    /// come); waits until it takes some. The queue's memory goes back once empty.
    pub async fn write_some(&mut self) -> io::Result<()> {
        self.seal_pending();
        if self.unwritten.is_empty() {
            return Ok(());
        }
        // The slices live only within a poll (not in this future's state, which an
        // idle socket's task holds).
        let mut written = poll_fn(|cx| {
            let mut slices = [IoSlice::new(&[]); PIECES_PER_WRITE];
            let count =
                slices.iter_mut().zip(&self.unwritten).map(|(slice, piece)| *slice = IoSlice::new(piece)).count();
            Pin::new(&mut self.io).poll_write_vectored(cx, &slices[..count])
        })
        .await?;
        if written == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        while let Some(piece) = self.unwritten.front_mut() {
            if piece.len() > written {
                piece.advance(written);
                break;
            }
            written -= piece.len();
            self.unwritten.pop_front();
        }
        if self.unwritten.is_empty() {
            self.unwritten = VecDeque::new();
            self.copied = 0;
        }
        Ok(())
    }

    /// Ends the TCP stream once the close frame is written, and reads (and drops)
    /// what the client still sends until it closes too: a stream closed with unread
    /// bytes is reset, and a reset can destroy the last frames before the client
    /// reads them. The caller bounds how long this waits.
    pub async fn shutdown(&mut self) -> io::Result<()> {
        self.io.shutdown().await?;
        self.read_buf = BytesMut::new();
        while poll_fn(|cx| self.poll_read_some(cx)).await? > 0 {
            self.read_buf.clear();
        }
        Ok(())
    }
}

/// Puts the header of a whole, unmasked (server) text frame of `length` bytes
/// (RFC 6455, section 5.2).
fn put_text_frame_header(header: &mut BytesMut, length: usize) {
    header.put_u8(0x80 | 0x1);
    match u16::try_from(length) {
        Ok(short) if short < 126 => header.put_u8(short as u8),
        Ok(medium) => {
            header.put_u8(126);
            header.put_u16(medium);
        }
        Err(_) => {
            header.put_u8(127);
            header.put_u64(length as u64);
        }
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
    fn a_text_frames_header_matches_the_codecs() {
        use actix_codec::Encoder;
        use actix_http::ws::{Codec, Message};
        for length in [0, 1, 125, 126, 127, 65_535, 65_536, 100_000] {
            let text = "x".repeat(length);
            let mut encoded = bytes::BytesMut::new();
            Codec::new().encode(Message::Text(text.clone().into()), &mut encoded).unwrap();
            let mut ours = bytes::BytesMut::new();
            super::put_text_frame_header(&mut ours, length);
            ours.extend_from_slice(text.as_bytes());
            assert_eq!(ours.to_vec(), encoded.to_vec(), "a text frame of {length} bytes");
        }
    }

    /// A long burst of small events is copied only up to `COPIED_BYTES`; the rest is
    /// queued as the events' own (shared) bytes, and every frame still goes out whole
    /// and in order.
    #[tokio::test]
    async fn a_long_burst_is_copied_only_so_far_and_written_in_order() {
        use actix_codec::Decoder;
        use actix_http::ws::{Codec, Frame};
        use tokio::io::AsyncReadExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = tokio::net::TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let mut socket = super::WebSocket::new(server, bytes::BytesMut::new(), 1 << 20);
        let events: Vec<bytestring::ByteString> =
            (0..100).map(|i| bytestring::ByteString::from(format!("{i:03}{}", "x".repeat(497)))).collect();
        for event in &events {
            socket.queue_text(event.clone());
        }
        assert!(socket.copied <= super::COPIED_BYTES, "{} bytes copied", socket.copied);
        let last = events.last().unwrap().as_bytes().as_ptr();
        assert!(
            socket.unwritten.iter().any(|piece| piece.as_ptr() == last),
            "the burst's tail is queued as the events' own bytes"
        );
        let reader = tokio::spawn(async move {
            let (mut client, mut received, mut codec) = (client, bytes::BytesMut::new(), Codec::new().client_mode());
            let mut texts = Vec::new();
            while texts.len() < 100 {
                if let Some(frame) = codec.decode(&mut received).unwrap() {
                    let Frame::Text(text) = frame else { panic!("{frame:?}") };
                    texts.push(String::from_utf8(text.to_vec()).unwrap());
                } else {
                    assert!(client.read_buf(&mut received).await.unwrap() > 0, "the stream ended early");
                }
            }
            texts
        });
        while socket.has_unwritten() {
            socket.write_some().await.unwrap();
        }
        assert_eq!(socket.copied, 0, "counted afresh once written");
        let expected: Vec<String> = events.iter().map(|event| event.to_string()).collect();
        assert_eq!(reader.await.unwrap(), expected);
    }

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
