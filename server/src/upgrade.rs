//! HTTP/1 upgrades, handed a connection of their own.
//!
//! A request asking to switch protocols goes through the same routes, middleware and
//! extractors as any other. A route that accepts it answers 101 Switching Protocols
//! and attaches a [`Switch`] to that response: the 101 is written, and the switch
//! then owns the TCP stream outright (actix-http's dispatcher, and the buffers it
//! keeps per connection, step aside). Any other answer is written whole and the
//! connection closes, as whatever follows an upgrade request on it is not HTTP.

use std::fmt;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::rc::Rc;

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
/// application that serves every other request) on an upgrade request.
pub fn service<A>(
    app: A,
) -> impl ServiceFactory<(Request, Framed<TcpStream, h1::Codec>), Config = (), Response = (), Error = Never, InitError = ()>
where
    A: ServiceFactory<Request, Config = (), Response = Response<BoxBody>, Error = Response<BoxBody>> + 'static,
    A::InitError: fmt::Debug,
{
    let app = Rc::new(app);
    fn_factory(move || {
        let app = app.clone();
        async move {
            let app = Rc::new(app.new_service(()).await.map_err(|error| {
                tracing::error!(?error, "the application for upgrade requests did not start");
            })?);
            Ok::<_, ()>(fn_service(move |(request, framed)| serve(app.clone(), request, framed)))
        }
    })
}

async fn serve<S>(app: Rc<S>, request: Request, mut framed: Framed<TcpStream, h1::Codec>) -> Result<(), Never>
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
        takeover(upgraded).await;
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
