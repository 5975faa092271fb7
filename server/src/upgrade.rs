//! HTTP/1 upgrades, handed a connection of their own.
//!
//! A request asking to switch protocols goes through the same routes, middleware and
//! extractors as any other. A route that accepts it answers 101 Switching Protocols
//! and attaches a [`Switch`] to that response: the 101 is written, and the switch
//! then owns the TCP stream outright (actix-http's dispatcher, and the buffers it
//! keeps per connection, step aside). Any other answer is written whole and the
//! connection closes, as whatever follows an upgrade request on it is not HTTP.
//!
//! A switched connection runs on a task of its own, and the HTTP connection's task
//! ends with the 101: what actix keeps per connection (about 2 KiB) is not held for
//! a WebSocket's life. actix's count of open connections then leaves it out, so
//! [`Switched`] counts them, for a graceful stop to wait for.

use std::fmt;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix_codec::Framed;
use actix_http::body::{self, BodySize, BoxBody};
use actix_http::{h1, ConnectionType, HttpMessage, Request, Response, StatusCode};
use actix_service::{fn_factory, fn_service, Service, ServiceFactory};
use bytes::BytesMut;
use tokio::net::TcpStream;

/// The connection, once the 101 has gone out.
pub struct Upgraded {
    pub io: TcpStream,
    /// What the client sent after its request, read already by the HTTP parser.
    pub read_ahead: BytesMut,
}

type Takeover = Box<dyn FnOnce(Upgraded) -> Pin<Box<dyn Future<Output = ()>>>>;

/// What runs on a connection a route switched (a response extension).
pub struct Switch(Takeover);

impl Switch {
    pub fn new<F, Fut>(takeover: F) -> Self
    where
        F: FnOnce(Upgraded) -> Fut + 'static,
        Fut: Future<Output = ()> + 'static,
    {
        Self(Box::new(move |upgraded| Box::pin(takeover(upgraded))))
    }
}

/// The switched connections still open, on every worker.
#[derive(Clone, Default)]
pub struct Switched(Arc<Count>);

#[derive(Default)]
struct Count {
    open: AtomicUsize,
    none_open: tokio::sync::Notify,
}

/// One switched connection, counted while it lives.
struct Open(Arc<Count>);

impl Drop for Open {
    fn drop(&mut self) {
        if self.0.open.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.none_open.notify_waiters();
        }
    }
}

impl Switched {
    fn open(&self) -> Open {
        self.0.open.fetch_add(1, Ordering::AcqRel);
        Open(self.0.clone())
    }

    /// How many are open now.
    pub fn open_now(&self) -> usize {
        self.0.open.load(Ordering::Acquire)
    }

    /// Waits until none is open, or for `within` at most: how many are still open.
    pub async fn all_closed(&self, within: Duration) -> usize {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            // Registered before the count is read: a close in between still wakes it.
            let closed = self.0.none_open.notified();
            tokio::pin!(closed);
            closed.as_mut().enable();
            let open = self.open_now();
            if open == 0 || tokio::time::timeout_at(deadline, closed).await.is_err() {
                return self.open_now();
            }
        }
    }
}

/// Marks a request that came through the upgrade service: only such a request's
/// connection can be handed over. actix-http's parser sends a request here only when
/// its `Upgrade` header is exactly `websocket` and it has no chunked body; a request
/// that passes a route's handshake check otherwise (`Upgrade: websocket, h2c`, say)
/// reaches the route as a plain request, and must not get a 101: its connection
/// would stay HTTP, and what follows the 101 on it would be read as requests.
struct Upgrading;

/// Whether `request` came through the upgrade service (see [`Upgrading`]).
pub fn is_upgrading(request: &actix_web::HttpRequest) -> bool {
    request.extensions().contains::<Upgrading>()
}

/// The error type actix-http asks an upgrade service for. The service never fails:
/// a connection that breaks while its answer is written is only logged.
#[derive(Debug)]
pub struct Never;

impl fmt::Display for Never {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("never")
    }
}

impl From<Never> for Response<BoxBody> {
    fn from(_: Never) -> Self {
        Response::internal_server_error()
    }
}

/// The upgrade service for actix-http: runs `app` (an instance of the same
/// application that serves every other request) on an upgrade request; a connection
/// it switches is counted in `switched` until it ends.
pub fn service<A>(
    app: A,
    switched: Switched,
) -> impl ServiceFactory<(Request, Framed<TcpStream, h1::Codec>), Config = (), Response = (), Error = Never, InitError = ()>
where
    A: ServiceFactory<Request, Config = (), Response = Response<BoxBody>, Error = Response<BoxBody>> + 'static,
    A::InitError: fmt::Debug,
{
    let app = Rc::new(app);
    fn_factory(move || {
        let (app, switched) = (app.clone(), switched.clone());
        async move {
            let app = Rc::new(app.new_service(()).await.map_err(|error| {
                tracing::error!(?error, "the application for upgrade requests did not start");
            })?);
            Ok::<_, ()>(fn_service(move |(request, framed)| serve(app.clone(), switched.clone(), request, framed)))
        }
    })
}

async fn serve<S>(
    app: Rc<S>,
    switched: Switched,
    request: Request,
    mut framed: Framed<TcpStream, h1::Codec>,
) -> Result<(), Never>
where
    S: Service<Request, Response = Response<BoxBody>, Error = Response<BoxBody>>,
{
    request.extensions_mut().insert(Upgrading);
    let mut response = app.call(request).await.unwrap_or_else(|refused| refused);
    let switch = response.extensions_mut().remove::<Switch>();
    let (mut head, body) = response.into_parts();
    if let Some(Switch(takeover)) = switch.filter(|_| head.status() == StatusCode::SWITCHING_PROTOCOLS) {
        if let Err(error) = write(&mut framed, [h1::Message::Item((head, BodySize::None))]).await {
            tracing::debug!(%error, "the client left before its upgrade was answered");
            return Ok(());
        }
        // The rest of the parts (the HTTP write buffer, 8 KiB) goes now, not when the
        // connection ends.
        let upgraded = {
            let parts = framed.into_parts();
            Upgraded { io: parts.io, read_ahead: parts.read_buf }
        };
        let open = switched.open();
        actix_web::rt::spawn(async move {
            takeover(upgraded).await;
            drop(open);
        });
        return Ok(());
    }
    head.head_mut().set_connection_type(ConnectionType::Close);
    let body = match body::to_bytes(body).await {
        Ok(body) => body,
        Err(error) => {
            tracing::error!(%error, "an answer to an upgrade request has no body to send");
            return Ok(());
        }
    };
    let length = BodySize::Sized(body.len() as u64);
    let answer = [h1::Message::Item((head, length)), h1::Message::Chunk(Some(body)), h1::Message::Chunk(None)];
    if let Err(error) = write(&mut framed, answer).await {
        tracing::debug!(%error, "the client left before its refused upgrade was answered");
    }
    Ok(())
}

type Outgoing = h1::Message<(Response<()>, BodySize)>;

async fn write<const N: usize>(
    framed: &mut Framed<TcpStream, h1::Codec>,
    messages: [Outgoing; N],
) -> std::io::Result<()> {
    for message in messages {
        Pin::new(&mut *framed).write(message)?;
    }
    poll_fn(|cx| Pin::new(&mut *framed).flush::<Outgoing>(cx)).await
}
