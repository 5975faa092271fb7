//! `GET /api/{domain}/{scope}/live`: a WebSocket per client.
//!
//! Server to client, one JSON object per text frame, told apart by `kind`:
//! - `{"kind":"ready"}` once the subscription is live (events from then on arrive);
//! - `{"kind":"event","event":{...}}` for each event in the scope;
//! - `{"kind":"reply","ref":..,"ok":true,"event":{...}}` or
//!   `{"kind":"reply","ref":..,"ok":false,"status":422,"error":{"code","message"}}`
//!   for each command the client sent (`ref` echoes the client's, if any);
//! - `{"kind":"resync"}` when events were dropped: refetch the snapshot.
//!
//! Client to server: a command as for `POST /api/{domain}/{scope}`, optionally with
//! a `ref`. Commands from one socket are applied in the order they were sent.
//! A ping goes out every `api.ws_heartbeat_secs`; a client silent for
//! `api.ws_client_timeout_secs` is disconnected.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_web::{get, web, HttpRequest, HttpResponse};
use actix_web_actors::ws;
use boardsync_actors::{DomainService, Live, SubscriberId};
use boardsync_core::{DomainError, ScopeKey, UserId};
use serde_json::{json, Value};

use crate::auth::User;
use crate::error::{error_body, status_of, ApiError};
use crate::routes::resolve;
use crate::startup::AppState;

#[get("/api/{domain}/{scope}/live")]
pub async fn live(
    req: HttpRequest,
    stream: web::Payload,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    user: User,
) -> Result<HttpResponse, actix_web::Error> {
    let (domain, scope) = path.into_inner();
    let (service, scope) = resolve(&state, &domain, &scope)?;
    // Refuse an unknown scope with a plain 404 before upgrading.
    state.scopes.require(service.name(), service.scope_noun(), &scope).await.map_err(ApiError)?;
    let session = LiveSession {
        service,
        scope,
        user: user.id,
        subscription: None,
        last_heard: Instant::now(),
        heartbeat: Duration::from_secs(state.settings.api.ws_heartbeat_secs),
        client_timeout: Duration::from_secs(state.settings.api.ws_client_timeout_secs),
    };
    ws::WsResponseBuilder::new(session, &req, stream).frame_size(state.settings.api.max_body_bytes).start()
}

struct LiveSession {
    service: Arc<dyn DomainService>,
    scope: ScopeKey,
    user: UserId,
    subscription: Option<SubscriberId>,
    last_heard: Instant,
    heartbeat: Duration,
    client_timeout: Duration,
}

fn reply_error(reference: &Value, error: &DomainError) -> String {
    let mut body = error_body(error);
    body["kind"] = json!("reply");
    body["ref"] = reference.clone();
    body["ok"] = json!(false);
    body["status"] = json!(status_of(error.kind).as_u16());
    body.to_string()
}

impl LiveSession {
    fn command(&mut self, text: &str, ctx: &mut ws::WebsocketContext<Self>) {
        let mut command: Value = match serde_json::from_str(text) {
            Ok(value @ Value::Object(_)) => value,
            _ => {
                let error = DomainError::bad_request("malformed_json", "a command must be a JSON object");
                ctx.text(reply_error(&Value::Null, &error));
                return;
            }
        };
        let reference = command.as_object_mut().and_then(|o| o.remove("ref")).unwrap_or(Value::Null);
        let service = self.service.clone();
        let scope = self.scope.clone();
        let user = self.user.clone();
        // `wait`: the next frame is read only once this command is answered, so a
        // socket's commands apply in order.
        ctx.wait(async move { service.apply(&scope, &user, command).await }.into_actor(self).map(
            move |outcome, _, ctx| match outcome {
                Ok(event) => {
                    ctx.text(json!({ "kind": "reply", "ref": reference, "ok": true, "event": event }).to_string())
                }
                Err(error) => ctx.text(reply_error(&reference, &error)),
            },
        ));
    }
}

impl Actor for LiveSession {
    type Context = ws::WebsocketContext<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(self.heartbeat, |session, ctx| {
            if session.last_heard.elapsed() > session.client_timeout {
                tracing::debug!(user = session.user.as_str(), "live client timed out");
                ctx.stop();
            } else {
                ctx.ping(b"");
            }
        });
        let service = self.service.clone();
        let scope = self.scope.clone();
        let recipient = ctx.address().recipient::<Live>();
        ctx.wait(async move { service.subscribe(&scope, recipient).await }.into_actor(self).map(
            |outcome, session, ctx| match outcome {
                Ok(id) => {
                    session.subscription = Some(id);
                    ctx.text(json!({ "kind": "ready" }).to_string());
                }
                Err(error) => {
                    ctx.text(reply_error(&Value::Null, &error));
                    ctx.close(Some(ws::CloseCode::Error.into()));
                    ctx.stop();
                }
            },
        ));
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        if let Some(id) = self.subscription.take() {
            self.service.unsubscribe(&self.scope, id);
        }
    }
}

impl Handler<Live> for LiveSession {
    type Result = ();

    fn handle(&mut self, frame: Live, ctx: &mut Self::Context) {
        match frame {
            Live::Event(event) => ctx.text(format!(r#"{{"kind":"event","event":{event}}}"#)),
            Live::Resync => ctx.text(r#"{"kind":"resync"}"#),
        }
    }
}

impl StreamHandler<Result<ws::Message, ws::ProtocolError>> for LiveSession {
    fn handle(&mut self, message: Result<ws::Message, ws::ProtocolError>, ctx: &mut Self::Context) {
        self.last_heard = Instant::now();
        match message {
            Ok(ws::Message::Text(text)) => self.command(&text, ctx),
            Ok(ws::Message::Ping(payload)) => ctx.pong(&payload),
            Ok(ws::Message::Pong(_)) => {}
            Ok(ws::Message::Binary(_)) => {
                let error = DomainError::bad_request("binary_not_supported", "send commands as JSON text frames");
                ctx.text(reply_error(&Value::Null, &error));
            }
            Ok(ws::Message::Close(reason)) => {
                ctx.close(reason);
                ctx.stop();
            }
            Ok(ws::Message::Continuation(_)) | Ok(ws::Message::Nop) => {}
            Err(error) => {
                let error = DomainError::too_large("frame_rejected", format!("the frame was refused: {error}"));
                ctx.text(reply_error(&Value::Null, &error));
                ctx.close(Some(ws::CloseCode::Size.into()));
                ctx.stop();
            }
        }
    }
}
