//! `GET /api/{domain}/{scope}/live`: a WebSocket per client.
//!
//! Server to client, one JSON object per text frame, told apart by `kind`:
//! - `{"kind":"ready"}` once the subscription is live (events from then on arrive);
//! - `{"kind":"event","event":{...}}` for each event in the scope;
//! - `{"kind":"reply","ref":..,"ok":true,"event":{...}}` or
//!   `{"kind":"reply","ref":..,"ok":false,"status":422,"error":{"code","message"}}`
//!   for each command the client sent (`ref` echoes the client's, if any);
//! - `{"kind":"resync"}` when events were dropped, or the scope was warmed again:
//!   refetch the snapshot;
//! - presence: `{"kind":"presence_snapshot","present":[peer]}` right after `ready`
//!   (and again, replacing the list, if presence frames for this socket were dropped),
//!   then `{"kind":"presence", connection, user, state}` when another connection
//!   joins or sets its state, and `{"kind":"presence_left", connection, user}` when it
//!   leaves. A client sets its own with `{"kind":"presence","state":...}`.
//!
//! A user who may no longer read the scope (removed from it, say) gets a last reply
//! with error `access_revoked`, and the socket closes with code 1008 (policy); so
//! does a socket whose token expires (`token_expired`). Access is re-checked on every
//! change and at every heartbeat.
//!
//! `?presence=false` keeps the socket out of the scope's presence: it is not listed,
//! and gets no presence frames (a client that shows nobody, such as a wall display
//! or a bot; on a scope with thousands of sockets each joining one costs the others
//! a frame). Presence was never a list of who reads: a reader fetching the snapshot
//! over HTTP is not in it either.
//!
//! Client to server: a command as for `POST /api/{domain}/{scope}`, optionally with
//! a `ref`. Commands from one socket are applied in the order they were sent, and
//! answered in that order. A client may pipeline: send the next commands without
//! waiting for replies (up to `api.ws_max_pipelined_commands`, and at most
//! `api.max_body_bytes` of them, are read ahead; past that the server reads no
//! further until a reply has gone out). Each command runs on a task of its own. A
//! client that closes the socket gets every command it sent before applied; one
//! that vanishes (no close) gets the one running finished, and those behind it
//! dropped. A graceful stop answers every command already read, those it did not
//! start with 503 `shutting_down`.
//! Each command comes in one text frame. A frame announced larger than
//! `api.max_body_bytes` gets error `frame_rejected` (413), refused from its header,
//! and the socket closes with 1009; a message in fragments gets `fragmented_message`
//! (400) and the socket goes on; a binary frame gets `binary_not_supported`. A text
//! frame that is not UTF-8 closes the socket with 1007, any other breach of the
//! protocol with 1002 (both after a `frame_rejected` reply).
//! A ping goes out every `api.ws_heartbeat_secs`; a client silent for
//! `api.ws_client_timeout_secs` is disconnected.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use actix_http::ws::{self, CloseCode, CloseReason, Frame, Item, ProtocolError};
use actix_web::{get, web, HttpRequest, HttpResponse};
use boardsync_actors::frame_queue;
use boardsync_actors::presence::Presence;
use boardsync_actors::{ClientSignal, DomainService, Live, Reply, ServerFrame, SubscriberId};
use boardsync_core::access::AccessChanged;
use boardsync_core::{DomainError, ErrorKind, ScopeKey};
use serde_json::Value;
use tokio::sync::broadcast;
use tokio::time::{self, Instant, MissedTickBehavior};

use crate::auth::{LiveUser, User};
use crate::error::{error_body, status_of, ApiError};
use crate::limits::SocketSlot;
use crate::routes::resolve;
use crate::startup::AppState;
use crate::upgrade::{self, Switch, Upgraded};
use crate::websocket::WebSocket;

/// Live frames queued for a socket's task; past it the socket is behind, and gets
/// one resync instead of the events it missed.
const LIVE_BUFFER: usize = 32;
/// Live frames held back while one of the socket's commands runs (its reply goes out
/// before the events it caused); past it they are replaced by one resync. Larger
/// than `LIVE_BUFFER`, so that a command taking a while on a busy scope does not
/// cost its client a resync.
const HELD_WHILE_COMMAND_RUNS: usize = 8 * LIVE_BUFFER;
/// How long a closed socket still reads what its client sends before its close
/// frame arrives (actix-web's own linger for a closed connection).
const CLOSE_LINGER: Duration = Duration::from_secs(1);
/// Presence frames buffered for a socket; past it they are dropped (the next update
/// of that connection supersedes a dropped one).
const PRESENCE_BUFFER: usize = 64;

/// The live route's query (besides the token, which `LiveUser` reads).
#[derive(serde::Deserialize)]
pub struct LiveOptions {
    #[serde(default = "joins_presence_by_default")]
    presence: bool,
}

fn joins_presence_by_default() -> bool {
    true
}

#[get("/api/{domain}/{scope}/live")]
pub async fn live(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    options: web::Query<LiveOptions>,
    LiveUser(user): LiveUser,
) -> Result<HttpResponse, actix_web::Error> {
    let (domain, scope) = path.into_inner();
    let (service, scope) = resolve(&state, &domain, &scope)?;
    // Changes of access from before the check on reach the socket (a removal in
    // between closes it), and so does a stop, however late the connection is handed
    // over.
    let (access, shutting_down) = (state.scopes.members.changes(), state.shutting_down.subscribe());
    // Refuse a scope the user may not see with a plain 404 before upgrading.
    service.may_read(&scope, &user.caller()).await.map_err(ApiError)?;
    let not_a_websocket = |why: String| {
        ApiError(DomainError::bad_request("not_a_websocket", format!("open this route as a WebSocket: {why}")))
    };
    let mut accepted = ws::handshake(req.head()).map_err(|error| not_a_websocket(error.to_string()))?;
    if !upgrade::is_upgrading(&req) {
        return Err(not_a_websocket("send `Upgrade: websocket` alone, and no body".into()).into());
    }
    // A stopping server takes no new socket: it would only be closed again, and a
    // client's reconnect belongs on the next incarnation or another node.
    if *shutting_down.borrow() {
        return Err(ApiError(boardsync_actors::service::shutting_down()).into());
    }
    let mut response = HttpResponse::from(accepted.finish().map_into_boxed_body());
    let slot = state.limits.open_socket(&user.id).map_err(|refused| {
        state.metrics.live_sockets_refused.with_label_values(&[refused.code.as_ref()]).inc();
        ApiError(refused)
    })?;
    let (state, joins_presence) = (state.into_inner(), options.presence);
    response.extensions_mut().insert(Switch::new(move |upgraded: Upgraded| {
        let api = &state.settings.api;
        let socket = LiveSocket {
            service,
            scope,
            access,
            shutting_down,
            leeway_secs: state.settings.auth.leeway_secs,
            slot: Rc::new(slot),
            user,
            conn: WebSocket::new(upgraded.io, upgraded.read_ahead, api.max_body_bytes),
            // `interval` panics on a zero period.
            heartbeat: Duration::from_secs(api.ws_heartbeat_secs.max(1)),
            client_timeout: Duration::from_secs(api.ws_client_timeout_secs),
            presence: None,
            joins_presence,
            presence_gap: match state.settings.presence.updates_per_sec {
                0 => Duration::ZERO,
                rate => Duration::from_secs(1) / rate,
            },
            max_presence_bytes: state.settings.presence.max_state_bytes,
            pending_presence: None,
            next_presence: Instant::now(),
            commands: Commands::new(api.ws_max_pipelined_commands, api.max_body_bytes),
            last_written: Instant::now(),
            state,
        };
        Box::new(socket).run()
    }));
    Ok(response)
}

fn reply_error(reference: &Value, error: &DomainError) -> String {
    reply(Reply {
        reference: reference.clone(),
        ok: false,
        event: None,
        status: Some(status_of(error.kind).as_u16()),
        error: Some(error_body(error).error),
    })
}

fn reply(reply: Reply<Value>) -> String {
    frame(&ServerFrame::Reply(reply))
}

fn frame(frame: &ServerFrame<Value>) -> String {
    serde_json::to_string(frame).expect("frames serialize")
}

/// One socket, owned by its own task.
struct LiveSocket {
    service: Arc<dyn DomainService>,
    scope: ScopeKey,
    user: User,
    /// Changes of who may see which scope: a user who may no longer read this one
    /// is disconnected.
    access: broadcast::Receiver<AccessChanged>,
    /// The server's graceful stop: the socket closes with 1001 (going away).
    shutting_down: tokio::sync::watch::Receiver<bool>,
    state: Arc<AppState>,
    leeway_secs: u64,
    /// This socket's place in its user's count of open sockets.
    /// Held by the socket's task and by each command it started, until both end: a
    /// command outliving its socket still counts against its user's sockets.
    slot: Rc<SocketSlot>,
    conn: WebSocket,
    heartbeat: Duration,
    client_timeout: Duration,
    /// This connection in the scope's presence (set once subscribed); leaves on drop.
    presence: Option<Presence>,
    /// Whether it joins the presence at all (`?presence=false`: no).
    joins_presence: bool,
    /// The least time between two presence updates passed on.
    presence_gap: Duration,
    max_presence_bytes: usize,
    /// The latest state sent before its slot: goes out at `next_presence`.
    pending_presence: Option<Value>,
    next_presence: Instant,
    commands: Commands,
    /// When the client last took some of what was written to it.
    last_written: Instant,
}

/// A command being applied, on a task of its own: it makes progress (and a
/// PostgreSQL transaction it holds ends) whatever this socket's task is doing, such
/// as waiting for a slow client to take a frame. With the command's `ref`, for a
/// reply if the task itself fails.
type Running = (Value, actix_web::rt::task::JoinHandle<String>);

/// A frame read ahead of the command running: its reply goes out after theirs.
enum Queued {
    /// A command to apply in its turn, kept as the text it came as (a parsed JSON
    /// value takes many times the size of its text) and parsed again then.
    Command(String),
    /// Refused as it was read (malformed, over the rate): the reply is ready.
    Refused(String),
}

/// The commands of one socket: at most one applies at a time, in the order read.
struct Commands {
    running: Option<Running>,
    queued: VecDeque<Queued>,
    /// The text of the commands queued.
    queued_bytes: usize,
    /// At most this many commands (`api.ws_max_pipelined_commands`) and this much
    /// queued text (`api.max_body_bytes`) are read ahead.
    max_pipelined: usize,
    max_queued_bytes: usize,
}

impl Commands {
    fn new(max_pipelined: usize, max_queued_bytes: usize) -> Self {
        Self { running: None, queued: VecDeque::new(), queued_bytes: 0, max_pipelined, max_queued_bytes }
    }

    /// Whether another frame may be read ahead.
    fn has_room(&self) -> bool {
        self.queued.len() + usize::from(self.running.is_some()) < self.max_pipelined
            && self.queued_bytes < self.max_queued_bytes
    }

    fn is_idle(&self) -> bool {
        self.running.is_none() && self.queued.is_empty()
    }

    fn push(&mut self, queued: Queued) {
        if let Queued::Command(text) = &queued {
            self.queued_bytes += text.len();
        }
        self.queued.push_back(queued);
    }

    fn pop(&mut self) -> Option<Queued> {
        let queued = self.queued.pop_front()?;
        if let Queued::Command(text) = &queued {
            self.queued_bytes -= text.len();
        }
        Some(queued)
    }
}

/// Live frames held back while a command runs, in order; past the bound, they give
/// way to one resync, and later ones are dropped until they go out (the client
/// refetches after the resync, which comes after them).
#[derive(Default)]
struct Held {
    frames: VecDeque<Live>,
    overflowed: bool,
}

impl Held {
    fn hold(&mut self, pushed: Live) {
        if self.overflowed {
            return;
        }
        if self.frames.len() >= HELD_WHILE_COMMAND_RUNS {
            self.frames.clear();
            self.frames.push_back(Live::Resync);
            self.overflowed = true;
        } else {
            self.frames.push_back(pushed);
        }
    }

    /// The frames held, to go out now.
    fn release(&mut self) -> VecDeque<Live> {
        self.overflowed = false;
        std::mem::take(&mut self.frames)
    }
}

/// The reply of the command running (only polled while there is one).
async fn answer_of(running: &mut Option<Running>) -> String {
    let (reference, task) = running.as_mut().expect("polled only while a command runs");
    match task.await {
        Ok(answer) => answer,
        Err(error) => {
            tracing::error!(%error, "a live command's task failed");
            reply_error(reference, &DomainError::internal("the command failed"))
        }
    }
}

fn token_expired_error() -> DomainError {
    DomainError::unauthorized("token_expired", "the token this socket was opened with has expired")
}

/// A command's JSON object and its `ref` (taken out of it).
fn parse_command(text: &str) -> Option<(Value, Value)> {
    match serde_json::from_str(text) {
        Ok(mut command @ Value::Object(_)) => {
            let reference = command.as_object_mut().and_then(|o| o.remove("ref")).unwrap_or(Value::Null);
            Some((reference, command))
        }
        _ => None,
    }
}

/// How a socket's task ends.
enum End {
    /// With a close frame carrying this reason.
    Close(Option<CloseReason>),
    /// Without one: the client is gone, silent, or no longer reading.
    Gone,
}

impl LiveSocket {
    /// Boxed: an async fn's state keeps a copy of its by-value arguments, and a
    /// socket's fields would be held twice for its whole life.
    async fn run(mut self: Box<Self>) {
        let Err(end) = self.serve().await;
        // The others hear it left now, not after the close handshake.
        self.presence = None;
        // A command that has begun runs to its end on its own task (its client left
        // or not); commands queued behind it when the client went away without a
        // close were never started, and are not.
        // (Not after a write that failed: the client was given up on already.)
        if let (End::Close(reason), false) = (end, self.conn.has_unwritten()) {
            self.conn.queue_close(reason);
            if self.flush().await.is_ok() {
                let _ = within(CLOSE_LINGER, self.conn.shutdown()).await;
            }
        }
    }

    async fn serve(&mut self) -> Result<Infallible, End> {
        let (subscriber, mut frames) = frame_queue::bounded(LIVE_BUFFER);
        let _subscription = match self.service.subscribe(&self.scope, &self.user.caller(), subscriber).await {
            Ok(id) => Subscription { service: self.service.clone(), scope: self.scope.clone(), id },
            Err(error) => {
                self.send(reply_error(&Value::Null, &error)).await?;
                return Err(End::Close(Some(CloseCode::Error.into())));
            }
        };
        self.send(frame(&ServerFrame::Ready)).await?;
        let (presence_in, mut presence_frames) = frame_queue::bounded(PRESENCE_BUFFER);
        if self.joins_presence {
            let (presence, present) =
                self.state.presence.join(self.service.name(), &self.scope, self.user.id.as_str(), presence_in);
            self.presence = Some(presence);
            self.send(frame(&ServerFrame::PresenceSnapshot { present })).await?;
        }

        let mut heartbeat = time::interval_at(Instant::now() + self.heartbeat, self.heartbeat);
        // After a long command, one ping rather than a burst of them.
        heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut last_heard = Instant::now();
        let mut held = Held::default();
        // The paths a socket takes now and then (a frame read, a heartbeat's check, the
        // end) are boxed as they run: the future held for every idle socket is then
        // what it waits on, not the largest of them.
        loop {
            if *self.shutting_down.borrow_and_update() {
                // Every command already read is answered first (those not started
                // before the stop with 503 `shutting_down`).
                Box::pin(self.finish_commands()).await;
                return Err(End::Close(Some(CloseReason {
                    code: CloseCode::Away,
                    description: Some("shutting_down".into()),
                })));
            }
            tokio::select! {
                _ = self.shutting_down.changed() => {}
                // Past the pipelining limit the socket is not read (TCP pushes back on
                // the client) until a reply has gone out.
                message = self.conn.recv(), if self.commands.has_room() => {
                    last_heard = Instant::now();
                    if let Err(end) = Box::pin(self.receive(message)).await {
                        // A client that closes gets every command it sent before
                        // applied (and answered, while it still reads).
                        if matches!(end, End::Close(_)) {
                            // The others hear it left now, not after its commands.
                            self.presence = None;
                            Box::pin(self.finish_commands()).await;
                        }
                        return Err(end);
                    }
                }
                answer = answer_of(&mut self.commands.running), if self.commands.running.is_some() => {
                    self.commands.running = None;
                    self.conn.queue_text(answer.into());
                    // The events it caused (and any others meanwhile) follow its reply,
                    // in the same write, before the next command starts.
                    for pushed in held.release() {
                        self.queue_live(pushed);
                    }
                    self.queue_pushed(&mut frames);
                    self.flush().await?;
                    Box::pin(self.next_command()).await?;
                }
                Some(pushed) = frames.recv() => {
                    // While a command runs, events are held: a client gets a command's
                    // reply before the events it caused (which reach this queue first).
                    if self.commands.running.is_some() {
                        held.hold(pushed);
                        for _ in 0..frames.len() {
                            let Ok(pushed) = frames.try_recv() else { break };
                            held.hold(pushed);
                        }
                        continue;
                    }
                    // What was queued already goes out in the same write (one wake-up,
                    // one system call), but no more: the fan-out keeps filling the
                    // queue on its own thread, and the other branches (access
                    // changes, the stop, commands, pongs) must get their turn between
                    // bursts.
                    self.queue_live(pushed);
                    self.queue_pushed(&mut frames);
                    self.flush().await?;
                }
                Some(peer) = presence_frames.recv() => {
                    self.send(peer.to_string()).await?;
                    self.resnapshot_presence_if_lost(&mut presence_frames).await?;
                }
                _ = time::sleep_until(self.next_presence), if self.pending_presence.is_some() => {
                    if let Some(state) = self.pending_presence.take() {
                        self.pass_presence_on(state);
                    }
                }
                change = self.access.recv() => {
                    let ours = match change {
                        Ok(change) => change.domain == self.service.name() && change.scope == self.scope,
                        // Missed some: check anyway.
                        Err(broadcast::error::RecvError::Lagged(_)) => true,
                        Err(broadcast::error::RecvError::Closed) => false,
                    };
                    if ours {
                        Box::pin(self.still_allowed()).await?;
                    }
                }
                _ = heartbeat.tick() => {
                    // While the socket is not read (commands queued to the limit), the
                    // client's pongs wait unread: its replies' sends time out instead.
                    // A client that takes the frames written to it is there too.
                    let last_sign = last_heard.max(self.last_written);
                    if self.commands.has_room() && last_sign.elapsed() > self.client_timeout {
                        tracing::debug!(user = self.user.id.as_str(), "live client timed out");
                        return Err(End::Gone);
                    }
                    // A missed notification or an expired token ends the socket within
                    // a heartbeat (the check reads what the access cache keeps).
                    Box::pin(self.still_allowed()).await?;
                    self.resnapshot_presence_if_lost(&mut presence_frames).await?;
                    self.conn.queue_ping();
                    self.flush().await?;
                }
            }
        }
    }

    async fn receive(&mut self, message: Option<Result<Frame, ProtocolError>>) -> Result<(), End> {
        match message {
            None => Err(End::Gone),
            Some(Ok(Frame::Text(text))) => match std::str::from_utf8(&text) {
                Ok(text) => self.command(text).await,
                Err(_) => {
                    let error = DomainError::bad_request("frame_rejected", "a text frame must be UTF-8");
                    self.refuse(reply_error(&Value::Null, &error)).await?;
                    Err(End::Close(Some(CloseCode::Invalid.into())))
                }
            },
            Some(Ok(Frame::Ping(payload))) => {
                self.conn.queue_pong(payload);
                self.flush().await
            }
            Some(Ok(Frame::Pong(_))) => Ok(()),
            // A command comes in one frame: a message in fragments is refused once, at
            // its first fragment, and the rest of it is skipped.
            Some(Ok(Frame::Continuation(Item::FirstText(_) | Item::FirstBinary(_)))) => {
                let error = DomainError::bad_request(
                    "fragmented_message",
                    "send each command as one WebSocket frame, not in fragments",
                );
                self.refuse(reply_error(&Value::Null, &error)).await
            }
            Some(Ok(Frame::Continuation(Item::Continue(_) | Item::Last(_)))) => Ok(()),
            Some(Ok(Frame::Binary(_))) => {
                let error = DomainError::bad_request("binary_not_supported", "send commands as JSON text frames");
                self.refuse(reply_error(&Value::Null, &error)).await
            }
            Some(Ok(Frame::Close(reason))) => Err(End::Close(reason)),
            Some(Err(ProtocolError::Overflow)) => {
                let message = format!("a frame may carry at most {} bytes", self.state.settings.api.max_body_bytes);
                self.refuse(reply_error(&Value::Null, &DomainError::too_large("frame_rejected", message))).await?;
                Err(End::Close(Some(CloseCode::Size.into())))
            }
            Some(Err(error)) => {
                let error = DomainError::bad_request("frame_rejected", format!("the frame was refused: {error}"));
                self.refuse(reply_error(&Value::Null, &error)).await?;
                Err(End::Close(Some(CloseCode::Protocol.into())))
            }
        }
    }

    async fn command(&mut self, text: &str) -> Result<(), End> {
        let Some((reference, command)) = parse_command(text) else {
            let error = DomainError::bad_request("malformed_json", "a command must be a JSON object");
            return self.refuse(reply_error(&Value::Null, &error)).await;
        };
        // Commands are tagged by `type` (and some carry a `kind` of their own, such as a
        // whiteboard element's); a frame without `type` but with `kind` is a signal.
        if command.get("type").is_none() && command.get("kind").is_some() {
            return match serde_json::from_value::<ClientSignal>(command) {
                Ok(ClientSignal::Presence { state }) => self.presence(state).await,
                Err(error) => {
                    let error = DomainError::bad_request(
                        "malformed_signal",
                        format!("not a signal this server knows: {error}"),
                    );
                    self.refuse(reply_error(&Value::Null, &error)).await
                }
            };
        }
        // The rate counts a command when it arrives, as over HTTP.
        if let Err(error) = self.state.limits.command(&self.user.id) {
            return self.refuse(reply_error(&reference, &error)).await;
        }
        if self.commands.is_idle() {
            self.start(reference, command);
        } else {
            self.commands.push(Queued::Command(text.to_owned()));
        }
        Ok(())
    }

    /// Answers a frame refused as it was read: now, or after the replies to the
    /// commands before it (replies go out in the order the frames came).
    async fn refuse(&mut self, answer: String) -> Result<(), End> {
        if self.commands.is_idle() {
            self.send(answer).await
        } else {
            self.commands.push(Queued::Refused(answer));
            Ok(())
        }
    }

    /// Applies a command on a task of its own (unless the socket's token has expired
    /// since the last heartbeat's check).
    fn start(&mut self, reference: Value, command: Value) {
        let (service, scope, user) = (self.service.clone(), self.scope.clone(), self.user.clone());
        let (slot, expired) = (self.slot.clone(), self.token_expired());
        let task_reference = reference.clone();
        self.commands.running = Some((
            task_reference,
            actix_web::rt::spawn(async move {
                let _slot = slot;
                if expired {
                    return reply_error(&reference, &token_expired_error());
                }
                match service.apply(&scope, &user.caller(), command).await {
                    Ok(event) => reply(Reply { reference, ok: true, event: Some(event), status: None, error: None }),
                    Err(error) => reply_error(&reference, &error),
                }
            }),
        ));
    }

    /// Sends the ready replies at the head of the queue and starts the first command
    /// behind them. One command applies at a time, so a socket's commands apply in
    /// the order sent (on either adapter).
    async fn next_command(&mut self) -> Result<(), End> {
        while let Some(queued) = self.commands.pop() {
            match queued {
                Queued::Refused(answer) => self.send(answer).await?,
                Queued::Command(text) => {
                    let (reference, command) = parse_command(&text).expect("parsed once already");
                    self.start(reference, command);
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// Applies every command read so far, in order, and answers each while the
    /// client still takes frames.
    async fn finish_commands(&mut self) {
        let mut reading = true;
        loop {
            if self.commands.running.is_some() {
                let answer = answer_of(&mut self.commands.running).await;
                self.commands.running = None;
                reading = reading && self.send(answer).await.is_ok();
            }
            match self.commands.pop() {
                None => return,
                Some(Queued::Refused(answer)) => reading = reading && self.send(answer).await.is_ok(),
                Some(Queued::Command(text)) => {
                    let (reference, command) = parse_command(&text).expect("parsed once already");
                    self.start(reference, command);
                }
            }
        }
    }

    /// Takes a presence update: passed on now, or (past the rate) at the next slot,
    /// where a later one replaces it.
    async fn presence(&mut self, state: Value) -> Result<(), End> {
        if !self.joins_presence {
            let error = DomainError::bad_request("presence_off", "this socket was opened with presence=false");
            return self.refuse(reply_error(&Value::Null, &error)).await;
        }
        let bytes = serde_json::to_string(&state).map_or(usize::MAX, |json| json.len());
        if bytes > self.max_presence_bytes {
            let message = format!("a presence state may have at most {} bytes of JSON", self.max_presence_bytes);
            return self.refuse(reply_error(&Value::Null, &DomainError::invalid("presence_too_large", message))).await;
        }
        if Instant::now() >= self.next_presence {
            self.pass_presence_on(state);
        } else {
            self.pending_presence = Some(state);
        }
        Ok(())
    }

    /// A presence frame for this socket was dropped (it read too slowly): a fresh
    /// snapshot replaces what the client holds.
    async fn resnapshot_presence_if_lost(&mut self, queued: &mut frame_queue::Receiver<Arc<str>>) -> Result<(), End> {
        match self.presence.as_ref().and_then(|presence| presence.resnapshot_if_lost(queued)) {
            Some(present) => self.send(frame(&ServerFrame::PresenceSnapshot { present })).await,
            None => Ok(()),
        }
    }

    fn pass_presence_on(&mut self, state: Value) {
        if let Some(presence) = &self.presence {
            presence.update(state);
        }
        self.next_presence = Instant::now() + self.presence_gap;
    }

    /// Closes the socket once its token has expired (policy violation), once its user
    /// may no longer read the scope (policy violation), or when that cannot be checked
    /// (1011: the client reconnects, and is checked again then).
    async fn still_allowed(&mut self) -> Result<(), End> {
        let ended = if self.token_expired() {
            token_expired_error()
        } else {
            match self.service.may_read(&self.scope, &self.user.caller()).await {
                Ok(()) => return Ok(()),
                Err(error) if error.kind == ErrorKind::NotFound => {
                    DomainError::forbidden("access_revoked", "you may no longer read this scope")
                }
                Err(error) => {
                    tracing::warn!(user = self.user.id.as_str(), scope = %self.scope, %error, "cannot re-check live access; closing");
                    self.send(reply_error(&Value::Null, &error)).await?;
                    return Err(End::Close(Some(CloseCode::Error.into())));
                }
            }
        };
        tracing::debug!(user = self.user.id.as_str(), scope = %self.scope, code = %ended.code, "live socket ended");
        self.send(reply_error(&Value::Null, &ended)).await?;
        Err(End::Close(Some(CloseReason { code: CloseCode::Policy, description: Some(ended.code.to_string()) })))
    }

    fn token_expired(&self) -> bool {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        now > self.user.expires_at.saturating_add(self.leeway_secs)
    }

    /// Queues what the fan-out has queued for this socket so far, and no more.
    fn queue_pushed(&mut self, frames: &mut frame_queue::Receiver<Live>) {
        for _ in 0..frames.len() {
            let Ok(pushed) = frames.try_recv() else { break };
            self.queue_live(pushed);
        }
    }

    fn queue_live(&mut self, pushed: Live) {
        match pushed {
            // The frame the fan-out made once for every subscriber.
            Live::Event(frame) => self.conn.queue_text(frame),
            Live::Resync => self.conn.queue_text(frame(&ServerFrame::Resync).into()),
        }
    }

    /// Writes the frames queued. A client that takes none of them for the client
    /// timeout is given up on; one that reads slowly is not (however large the burst).
    async fn flush(&mut self) -> Result<(), End> {
        while self.conn.has_unwritten() {
            within(self.client_timeout, self.conn.write_some()).await?;
            self.last_written = Instant::now();
        }
        Ok(())
    }

    async fn send(&mut self, text: impl Into<bytestring::ByteString>) -> Result<(), End> {
        self.conn.queue_text(text.into());
        self.flush().await
    }
}

/// A frame for the client, given up on after `limit`: a client that stops reading
/// would otherwise hold this task, and its subscription, past its timeout.
async fn within(limit: Duration, sent: impl Future<Output = std::io::Result<()>>) -> Result<(), End> {
    match time::timeout(limit, sent).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) | Err(_) => Err(End::Gone),
    }
}

/// Unsubscribes when the socket's task ends, however it ends.
struct Subscription {
    service: Arc<dyn DomainService>,
    scope: ScopeKey,
    id: SubscriberId,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.service.unsubscribe(&self.scope, self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_tagged_by_kind() {
        assert_eq!(frame(&ServerFrame::Resync), r#"{"kind":"resync"}"#);
        let error = DomainError::forbidden("read_only", "viewers read");
        let reply: Value = serde_json::from_str(&reply_error(&Value::from("r1"), &error)).unwrap();
        assert_eq!(
            reply,
            serde_json::json!({ "kind": "reply", "ref": "r1", "ok": false, "status": 403,
                                "error": { "code": "read_only", "message": "viewers read" } })
        );
    }
}
