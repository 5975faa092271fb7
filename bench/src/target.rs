//! The systems under test and their minimal clients: a socket that subscribes, and
//! only looks for an edit's id in the frames it gets (no JSON parsing, no CRDT), so
//! that the servers are what is compared.
//!
//! - boardsync: the chat domain's live route; an edit is a `send` command.
//! - Hocuspocus: its Yjs sync protocol over WebSocket; an edit is a Yjs update made
//!   ahead of the run (`bench/peers/hocuspocus/updates.mjs`), each carrying its id.
//! - Zero (zero-cache): its sync protocol (`bench/peers/zero/PROTOCOL.md`); a
//!   subscriber is a client group of its own with one query (the room's messages),
//!   an edit a CRUD insert pushed by the room's writer.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context};
use futures::{SinkExt, StreamExt};
use serde_json::json;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How long a socket may take to become ready (subscribed); zero-cache hydrates
/// client groups one after another on its one sync worker here.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
const ZERO_READY_TIMEOUT: Duration = Duration::from_secs(120);
/// tungstenite zeroes its whole read buffer (128 KiB by default) before every read:
/// with thousands of sockets receiving small frames that was most of the
/// generator's CPU time (a profile showed 43% in memset). Frames here are small.
const READ_BUFFER_BYTES: usize = 4096;

async fn connect(request: impl IntoClientRequest + Unpin) -> anyhow::Result<Socket> {
    let config = WebSocketConfig::default().read_buffer_size(READ_BUFFER_BYTES);
    let (socket, _) = tokio_tungstenite::connect_async_with_config(request, Some(config), true).await?;
    Ok(socket)
}

/// One pre-made Yjs update for Hocuspocus, and the id it carries.
#[derive(Debug, Clone)]
pub struct YjsUpdate {
    pub id: String,
    pub bytes: Vec<u8>,
}

#[derive(Clone)]
pub enum Target {
    Boardsync {
        /// `http://host:port`
        url: String,
        /// A user who may write the scopes the bench creates.
        token: String,
        admin_token: String,
        /// Whether subscribers join the scope's presence (a client showing who is here).
        presence: bool,
        /// Another node (`http://host:port`) the writers write through, so that edits
        /// reach the subscribers across nodes; `None`: the same node.
        writer_url: Option<String>,
    },
    Hocuspocus {
        /// `ws://host:port`
        url: String,
        updates: Arc<Vec<YjsUpdate>>,
    },
    Zero {
        /// `ws://host:port`
        url: String,
        /// The mutation ids each room's writer has used (Zero counts them per client,
        /// from 1, and refuses a gap).
        mutations: Arc<Mutex<HashMap<String, u64>>>,
    },
}

impl Target {
    pub fn name(&self) -> &'static str {
        match self {
            Target::Boardsync { .. } => "boardsync",
            Target::Hocuspocus { .. } => "hocuspocus",
            Target::Zero { .. } => "zero",
        }
    }

    /// Makes `room` (a scope anyone signed in may write; a Hocuspocus document needs
    /// nothing).
    pub async fn prepare_room(&self, http: &reqwest::Client, room: &str) -> anyhow::Result<()> {
        if let Target::Boardsync { url, admin_token, .. } = self {
            let response = http
                .put(format!("{url}/api/admin/scopes/chat/{room}"))
                .bearer_auth(admin_token)
                .json(&json!({ "name": room, "config": { "access": { "authenticated": "write" } } }))
                .send()
                .await?;
            if !response.status().is_success() {
                bail!("creating scope {room}: {} {}", response.status(), response.text().await.unwrap_or_default());
            }
        }
        Ok(())
    }

    /// A socket subscribed to `room`, past its handshake (boardsync's `ready`;
    /// Hocuspocus' first sync reply; Zero's first poke with the query's rows).
    pub async fn subscribe(&self, room: &str) -> anyhow::Result<Socket> {
        let client = uuid::Uuid::new_v4().simple().to_string();
        tokio::time::timeout(self.ready_timeout(), self.subscribe_now(room, &client))
            .await
            .context("subscribing timed out")?
    }

    /// The socket `room`'s edits ([`Self::edit`]) are sent on: a subscriber too. At
    /// most one per room (Zero's writer is a client whose mutations are counted).
    pub async fn writer(&self, room: &str) -> anyhow::Result<Socket> {
        if let Target::Boardsync { writer_url: Some(other), .. } = self {
            let mut through = self.clone();
            if let Target::Boardsync { url, writer_url, .. } = &mut through {
                (*url, *writer_url) = (other.clone(), None);
            }
            return Box::pin(through.writer(room)).await;
        }
        tokio::time::timeout(self.ready_timeout(), self.subscribe_now(room, &zero::writer_of(room)))
            .await
            .context("opening the writer timed out")?
    }

    fn ready_timeout(&self) -> Duration {
        match self {
            Target::Zero { .. } => ZERO_READY_TIMEOUT,
            _ => READY_TIMEOUT,
        }
    }

    /// Sockets worth opening at once: zero-cache refuses none, but each new client
    /// group is hydrated in turn, so many at once only queue up there.
    pub fn connecting_at_once(&self) -> usize {
        match self {
            Target::Zero { .. } => 10,
            _ => 100,
        }
    }

    async fn subscribe_now(&self, room: &str, client: &str) -> anyhow::Result<Socket> {
        match self {
            Target::Boardsync { url, token, presence, .. } => {
                let ws = url.replacen("http", "ws", 1);
                let presence = if *presence { "" } else { "&presence=false" };
                let mut socket = connect(&format!("{ws}/api/chat/{room}/live?token={token}{presence}")).await?;
                loop {
                    let frame = socket.next().await.context("closed before ready")??;
                    if let Message::Text(text) = &frame {
                        if text.contains(r#""kind":"ready""#) {
                            return Ok(socket);
                        }
                        if text.contains(r#""ok":false"#) {
                            bail!("refused: {}", text.as_str());
                        }
                    }
                }
            }
            Target::Hocuspocus { url, .. } => {
                let mut socket = connect(&format!("{url}/{room}")).await?;
                socket.send(Message::binary(hocuspocus::auth(room))).await?;
                socket.send(Message::binary(hocuspocus::sync_step1(room))).await?;
                loop {
                    let frame = socket.next().await.context("closed before ready")??;
                    if let Message::Binary(bytes) = &frame {
                        match hocuspocus::message_type(bytes) {
                            Some(hocuspocus::SYNC | hocuspocus::SYNC_REPLY) => return Ok(socket),
                            Some(hocuspocus::AUTH) if hocuspocus::is_permission_denied(bytes) => bail!("refused"),
                            _ => {}
                        }
                    }
                }
            }
            Target::Zero { url, .. } => {
                let mut request = zero::connect_url(url, client).into_client_request()?;
                // The handshake's subprotocol carries the connection's first message,
                // here none (`{}`): initConnection follows as a frame.
                request.headers_mut().insert("Sec-WebSocket-Protocol", zero::EMPTY_HANDSHAKE.parse()?);
                let mut socket = connect(request).await?;
                socket.send(Message::text(zero::init_connection(room).to_string())).await?;
                let mut hydrated = false;
                loop {
                    let frame = socket.next().await.context("closed before ready")??;
                    let Message::Text(text) = &frame else { continue };
                    if text.starts_with(r#"["error""#) {
                        bail!("refused: {}", text.as_str());
                    }
                    hydrated |= text.contains(r#""gotQueriesPatch""#);
                    if hydrated && text.starts_with(r#"["pokeEnd""#) {
                        return Ok(socket);
                    }
                }
            }
        }
    }

    /// Edit number `index` of a run in `room`, and the id a subscriber looks for.
    /// `tag` is in every boardsync edit's text; Hocuspocus edits carry the tag they
    /// were made with (`updates.mjs`).
    pub fn edit(&self, room: &str, index: usize, tag: &str) -> anyhow::Result<(String, Message)> {
        match self {
            Target::Boardsync { .. } => {
                let id = uuid::Uuid::new_v4().to_string();
                let command = json!({ "ref": index, "type": "send", "id": id, "text": tag });
                Ok((id, Message::text(command.to_string())))
            }
            Target::Hocuspocus { updates, .. } => {
                let update = updates
                    .get(index)
                    .with_context(|| format!("only {} Yjs updates were made for the run", updates.len()))?;
                Ok((update.id.clone(), Message::binary(hocuspocus::update(room, &update.bytes))))
            }
            Target::Zero { mutations, .. } => {
                let mutation = {
                    let mut used = mutations.lock().unwrap();
                    let last = used.entry(room.to_string()).or_insert(0);
                    *last += 1;
                    *last
                };
                let id = uuid::Uuid::new_v4().to_string();
                Ok((id.clone(), Message::text(zero::insert(room, mutation, &id, tag).to_string())))
            }
        }
    }

    /// What `frame` tells a writer about its edits: boardsync's reply, Hocuspocus'
    /// sync status (sent after it applied an update, in memory: storing it comes
    /// later), Zero's new last mutation id (sent once the insert committed in
    /// PostgreSQL; one may answer several) or its error for a mutation that failed
    /// (acknowledged all the same after it). `answered`: the writer's edits answered
    /// so far.
    pub fn answer(&self, frame: &Message, answered: u64) -> Option<Answer> {
        match (self, frame) {
            (Target::Boardsync { .. }, Message::Text(text)) if text.starts_with(r#"{"kind":"reply""#) => {
                Some(if text.contains(r#""ok":true"#) { Answer::Taken(1) } else { Answer::Refused(1) })
            }
            (Target::Hocuspocus { .. }, Message::Binary(bytes)) => {
                hocuspocus::sync_status(bytes).map(|ok| if ok { Answer::Taken(1) } else { Answer::Refused(1) })
            }
            (Target::Zero { .. }, Message::Text(text)) if text.starts_with(r#"["error""#) => {
                text.contains(r#""MutationFailed""#).then_some(Answer::Failed)
            }
            (Target::Zero { .. }, Message::Text(text)) => {
                zero::last_mutation(text).filter(|&last| last > answered).map(|last| Answer::Taken(last - answered))
            }
            _ => None,
        }
    }

    /// Whether a frame tells a subscriber it missed events (boardsync's `resync`).
    pub fn is_resync(&self, frame: &[u8]) -> bool {
        matches!(self, Target::Boardsync { .. }) && memchr::memmem::find(frame, br#""kind":"resync""#).is_some()
    }
}

/// The few messages of Zero's sync protocol a minimal client needs
/// (`bench/peers/zero/PROTOCOL.md`).
pub mod zero {
    use serde_json::{json, Value};

    /// zero-cache 1.9's protocol version.
    const PROTOCOL_VERSION: u32 = 51;
    /// `encodeURIComponent(base64("{}"))`: no first message in the handshake.
    pub const EMPTY_HANDSHAKE: &str = "e30%3D";

    /// The client (and client group) that writes to `room`.
    pub fn writer_of(room: &str) -> String {
        format!("writer-{room}")
    }

    /// A fresh client in a client group of its own (an independent user).
    pub fn connect_url(url: &str, client: &str) -> String {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis());
        format!(
            "{url}/sync/v{PROTOCOL_VERSION}/connect?clientGroupID={client}&clientID={client}&wsid={client}\
             &baseCookie=&ts={now}&lmid=0"
        )
    }

    /// The subscription: the room's messages (and the schema a new client group
    /// must declare).
    pub fn init_connection(room: &str) -> Value {
        json!(["initConnection", {
            "desiredQueriesPatch": [{
                "op": "put",
                "hash": format!("messages-{room}"),
                "ast": {
                    "table": "message",
                    "where": {
                        "type": "simple",
                        "op": "=",
                        "left": { "type": "column", "name": "channel" },
                        "right": { "type": "literal", "value": room }
                    }
                }
            }],
            "clientSchema": { "tables": { "message": {
                "columns": {
                    "id": { "type": "string" },
                    "channel": { "type": "string" },
                    "author": { "type": "string" },
                    "text": { "type": "string" },
                    "created_at": { "type": "number" }
                },
                "primaryKey": ["id"]
            }}}
        }])
    }

    /// Room `room`'s writer inserts message `id` as its mutation number `mutation`.
    pub fn insert(room: &str, mutation: u64, id: &str, text: &str) -> Value {
        let client = writer_of(room);
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis());
        json!(["push", {
            "clientGroupID": client,
            "mutations": [{
                "type": "crud",
                "id": mutation,
                "clientID": client,
                "name": "_zero_crud",
                "args": [{ "ops": [{
                    "op": "insert",
                    "tableName": "message",
                    "primaryKey": ["id"],
                    "value": { "id": id, "channel": room, "author": "bench", "text": text, "created_at": now as u64 }
                }]}],
                "timestamp": now as u64
            }],
            "pushVersion": 1,
            "timestamp": now as u64,
            "requestID": format!("{client}-{mutation}")
        }])
    }

    /// The last mutation id a poke acknowledges (`lastMutationIDChanges`), if any.
    pub fn last_mutation(frame: &str) -> Option<u64> {
        const KEY: &str = r#""lastMutationIDChanges":{"#;
        let after = &frame[frame.find(KEY)? + KEY.len()..];
        let digits = after[after.find("\":")? + 2..].trim_start();
        let end = digits.find(|c: char| !c.is_ascii_digit()).unwrap_or(digits.len());
        digits[..end].parse().ok()
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn acknowledgements_are_read_from_pokes() {
            let poke = r#"["pokePart",{"pokeID":"0a","lastMutationIDChanges":{"writer-r":17},"rowsPatch":[]}]"#;
            assert_eq!(last_mutation(poke), Some(17));
            assert_eq!(last_mutation(r#"["pokeEnd",{"pokeID":"0a"}]"#), None);
        }
    }
}

/// What a frame tells a writer about its edits, oldest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Taken(u64),
    Refused(u64),
    /// The oldest edit not yet answered failed; its acknowledgement follows.
    Failed,
}

/// Reads the pre-made updates: one `<id> <hex>` per line.
pub fn read_updates(path: &str) -> anyhow::Result<Vec<YjsUpdate>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
    text.lines()
        .filter(|line| !line.is_empty())
        .map(|line| {
            let (id, hex) = line.split_once(' ').context("expected `<id> <hex>`")?;
            let bytes = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16))
                .collect::<Result<Vec<u8>, _>>()?;
            Ok(YjsUpdate { id: id.to_string(), bytes })
        })
        .collect()
}

/// The few messages of Hocuspocus' protocol a minimal client needs (lib0 encoding:
/// each message starts with the document's name, then its type).
pub mod hocuspocus {
    pub const SYNC: u64 = 0;
    pub const AUTH: u64 = 2;
    pub const SYNC_REPLY: u64 = 4;
    /// The server's answer to an update: applied (1) or refused (0).
    pub const SYNC_STATUS: u64 = 8;
    /// Sub-types of a Sync message (y-protocols).
    const SYNC_STEP_1: u64 = 0;
    const SYNC_UPDATE: u64 = 2;
    /// Sub-types of an Auth message.
    const AUTH_TOKEN: u64 = 0;
    const AUTH_PERMISSION_DENIED: u64 = 1;

    fn var_uint(out: &mut Vec<u8>, mut value: u64) {
        while value >= 0x80 {
            out.push((value as u8 & 0x7f) | 0x80);
            value >>= 7;
        }
        out.push(value as u8);
    }

    fn var_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
        var_uint(out, bytes.len() as u64);
        out.extend_from_slice(bytes);
    }

    fn read_var_uint(bytes: &[u8], at: &mut usize) -> Option<u64> {
        let mut value = 0u64;
        let mut shift = 0;
        loop {
            let byte = *bytes.get(*at)?;
            *at += 1;
            value |= u64::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                return Some(value);
            }
            shift += 7;
        }
    }

    fn start(document: &str, kind: u64) -> Vec<u8> {
        let mut out = Vec::with_capacity(32);
        var_bytes(&mut out, document.as_bytes());
        var_uint(&mut out, kind);
        out
    }

    pub fn auth(document: &str) -> Vec<u8> {
        let mut out = start(document, AUTH);
        var_uint(&mut out, AUTH_TOKEN);
        var_bytes(&mut out, b"bench");
        out
    }

    /// Sync step 1 with the empty document's state vector: "send me everything".
    pub fn sync_step1(document: &str) -> Vec<u8> {
        let mut out = start(document, SYNC);
        var_uint(&mut out, SYNC_STEP_1);
        var_bytes(&mut out, &[0]);
        out
    }

    pub fn update(document: &str, update: &[u8]) -> Vec<u8> {
        let mut out = start(document, SYNC);
        var_uint(&mut out, SYNC_UPDATE);
        var_bytes(&mut out, update);
        out
    }

    /// The message type after the document's name.
    pub fn message_type(bytes: &[u8]) -> Option<u64> {
        let mut at = 0;
        let name_len = read_var_uint(bytes, &mut at)? as usize;
        at += name_len;
        read_var_uint(bytes, &mut at)
    }

    /// A sync status message's verdict.
    pub fn sync_status(bytes: &[u8]) -> Option<bool> {
        let mut at = 0;
        let name_len = read_var_uint(bytes, &mut at)? as usize;
        at += name_len;
        if read_var_uint(bytes, &mut at)? != SYNC_STATUS {
            return None;
        }
        read_var_uint(bytes, &mut at).map(|saved| saved == 1)
    }

    pub fn is_permission_denied(bytes: &[u8]) -> bool {
        let mut at = 0;
        let Some(name_len) = read_var_uint(bytes, &mut at) else { return false };
        at += name_len as usize;
        read_var_uint(bytes, &mut at) == Some(AUTH) && read_var_uint(bytes, &mut at) == Some(AUTH_PERMISSION_DENIED)
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn messages_read_back_their_type() {
            assert_eq!(message_type(&auth("doc")), Some(AUTH));
            assert_eq!(message_type(&update("a-much-longer-document-name", &[1; 300])), Some(SYNC));
            let mut long = Vec::new();
            var_uint(&mut long, 300);
            assert_eq!(long, vec![0xac, 0x02]);
            let mut status = start("doc", SYNC_STATUS);
            var_uint(&mut status, 1);
            assert_eq!(sync_status(&status), Some(true));
            assert_eq!(sync_status(&auth("doc")), None);
        }
    }
}
