//! `GET /api/openapi.json`: an OpenAPI 3.0 description of the API. Every running
//! domain gets its own paths, and its commands, events, items and live frames are
//! JSON Schemas generated from the Rust types the server parses and writes, so the
//! document cannot drift from the code.

use actix_web::{get, web, HttpResponse};
use boardsync_actors::warmup::WarmupStatus;
use boardsync_actors::{ClientSignal, DomainDescription};
use boardsync_core::access::Role;
use boardsync_core::scope::Scope;
use boardsync_core::{Durability, ErrorBody};
use schemars::generate::SchemaSettings;
use schemars::SchemaGenerator;
use serde_json::{json, Map, Value};

use crate::startup::AppState;

/// What the client adds to a domain's command: over HTTP `durability`, and on a live
/// socket also `ref`, echoed in the reply.
enum Envelope {
    Http,
    Live,
}

fn error_response(description: &str) -> Value {
    json!({ "description": description, "content": { "application/json": { "schema": { "$ref": "#/components/schemas/ErrorBody" } } } })
}

/// Error responses, by status, with what they mean on this route.
fn errors(statuses: &[(&str, &str)]) -> Map<String, Value> {
    statuses.iter().map(|(status, what)| (status.to_string(), error_response(what))).collect()
}

/// Errors every route that takes a token can answer.
const AUTHENTICATED: [(&str, &str); 3] = [
    ("400", "A malformed query, path or body"),
    ("401", "No token, or one that does not verify: `token_missing`, `token_invalid`, `token_expired`, ..."),
    ("503", "PostgreSQL (or the cache) cannot serve now; retry after `Retry-After` seconds"),
];

/// An operation: `summary`, its success responses, its own errors, and the errors
/// every authenticated route shares.
fn operation(summary: &str, success: Value, own_errors: &[(&str, &str)]) -> Value {
    let mut responses = errors(&AUTHENTICATED);
    responses.extend(errors(own_errors));
    for (status, response) in success.as_object().expect("success responses are an object") {
        responses.insert(status.clone(), response.clone());
    }
    json!({ "summary": summary, "responses": responses })
}

fn json_response(description: &str, schema: Value) -> Value {
    json!({ "description": description, "content": { "application/json": { "schema": schema } } })
}

fn json_body(schema: Value) -> Value {
    json!({ "required": true, "content": { "application/json": { "schema": schema } } })
}

fn reference(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

/// The name a generated `{"$ref": "#/components/schemas/<name>"}` points at.
fn referenced_name(schema: &Value) -> Option<String> {
    schema.get("$ref")?.as_str()?.rsplit('/').next().map(str::to_owned)
}

/// The command's schema with the envelope's fields added to each variant, since each
/// variant refuses fields it does not know.
fn enveloped(command: &Value, envelope: &Envelope) -> Value {
    let mut schema = command.clone();
    let add = |variant: &mut Value| {
        if let Some(properties) = variant.get_mut("properties").and_then(Value::as_object_mut) {
            properties.insert("durability".into(), json!({
                "allOf": [reference("Durability")],
                "description": "When the reply comes: once the cache has the write (`cache`, the default) or once PostgreSQL has committed it (`durable`)." }));
            if let Envelope::Live = envelope {
                properties.insert("ref".into(), json!({ "description": "Any JSON value, echoed in the reply" }));
            }
        }
    };
    match schema.get_mut("oneOf").and_then(Value::as_array_mut) {
        Some(variants) => variants.iter_mut().for_each(add),
        None => add(&mut schema),
    }
    schema
}

fn capitalized(name: &str) -> String {
    let mut chars = name.chars();
    chars.next().map(|first| first.to_uppercase().chain(chars).collect()).unwrap_or_default()
}

/// Page sizes as the settings allow them (`api.default_page_size`, `api.max_page_size`).
pub struct PageSizes {
    pub default: u32,
    pub max: u32,
}

impl PageSizes {
    pub fn of(settings: &crate::settings::Settings) -> Self {
        Self { default: settings.api.default_page_size, max: settings.api.max_page_size }
    }
}

/// The document for every domain wired into this binary, without running any
/// (`boardsync openapi`): the same as a server's `GET /api/openapi.json`.
pub async fn document_of_wired_domains(settings: &crate::settings::Settings) -> Value {
    struct Describing {
        generator: SchemaGenerator,
        described: Vec<DomainDescription>,
    }
    #[async_trait::async_trait]
    impl crate::domains::EachDomain for Describing {
        type Error = std::convert::Infallible;
        async fn visit<D: boardsync_core::DomainAdapters>(&mut self) -> Result<(), Self::Error> {
            self.described.push(DomainDescription::of::<D>(&mut self.generator));
            Ok(())
        }
    }
    let mut describing = Describing { generator: schema_generator(), described: Vec::new() };
    let Ok(()) = crate::domains::for_each(&mut describing).await;
    document(describing.generator, &describing.described, &PageSizes::of(settings))
}

/// The generator the domains' descriptions and the document share.
pub fn schema_generator() -> SchemaGenerator {
    SchemaSettings::openapi3().into_generator()
}

/// The document for `domains`, described into `generator`.
pub fn document(mut generator: SchemaGenerator, domains: &[DomainDescription], pages: &PageSizes) -> Value {
    let error_body = generator.subschema_for::<ErrorBody>();
    let _ = generator.subschema_for::<Durability>();
    let scope_schema = generator.subschema_for::<Scope>().to_value();
    let role = generator.subschema_for::<Role>().to_value();
    let warmup_status = generator.subschema_for::<WarmupStatus>().to_value();
    let signal = generator.subschema_for::<ClientSignal>().to_value();
    let mut schemas: Map<String, Value> = generator.take_definitions(true);
    debug_assert_eq!(referenced_name(&error_body.to_value()).as_deref(), Some("ErrorBody"));

    let scope_param = json!({ "name": "scope", "in": "path", "required": true,
        "description": "1-64 of a-z, 0-9, _ and -, starting with a letter or digit",
        "schema": { "type": "string", "pattern": "^[a-z0-9][a-z0-9_-]{0,63}$", "example": "general" } });
    let user_param =
        json!({ "name": "user", "in": "path", "required": true, "schema": { "type": "string", "example": "ada" } });
    let names: Vec<&str> = domains.iter().map(|d| d.name).collect();
    let limit = json!({ "name": "limit", "in": "query",
        "schema": { "type": "integer", "minimum": 1, "maximum": pages.max, "default": pages.default } });
    let member = json!({ "type": "object", "required": ["user", "role"],
        "properties": { "user": { "type": "string" }, "role": role.clone() } });
    let queued = json_response(
        "Queued; watch `GET /api/admin/warmup`",
        json!({ "type": "object", "required": ["queued"], "properties": { "queued": { "type": "array", "items": {
            "type": "object", "properties": { "domain": { "type": "string" }, "scope": { "type": "string", "nullable": true } } } } } }),
    );

    let mut paths = Map::new();
    paths.insert(
        "/health".into(),
        json!({ "get": { "summary": "Dependency status and the adapter in use", "security": [],
        "responses": { "200": { "description": "Healthy" }, "503": { "description": "A dependency is down (status `degraded`), or the node is stopping (status `shutting_down`)" } } } }),
    );
    paths.insert("/metrics".into(), json!({ "get": { "summary": "Prometheus metrics", "security": [],
        "responses": { "200": { "description": "Text format", "content": { "text/plain": { "schema": { "type": "string" } } } } } } }));
    paths.insert("/api/openapi.json".into(), json!({ "get": { "summary": "This document", "security": [],
        "responses": { "200": { "description": "OpenAPI 3.0", "content": { "application/json": { "schema": { "type": "object" } } } } } } }));

    for description in domains {
        let name = description.name;
        let noun = description.noun;
        let title = capitalized(name);
        let command = description.command.as_value().clone();
        let command_name = referenced_name(&command).unwrap_or_else(|| format!("{title}Command"));
        let command_definition = schemas.get(&command_name).cloned().unwrap_or(command);
        schemas.insert(format!("{title}Request"), enveloped(&command_definition, &Envelope::Http));
        let mut client_frame = enveloped(&command_definition, &Envelope::Live);
        if let Some(variants) = client_frame.get_mut("oneOf").and_then(Value::as_array_mut) {
            variants.push(signal.clone());
        }
        schemas.insert(format!("{title}ClientFrame"), client_frame);
        let event = description.event.as_value().clone();
        let item = description.item.as_value().clone();
        let page = json!({ "type": "object", "required": ["items", "has_more", "next_before"], "properties": {
            "items": { "type": "array", "items": item },
            "has_more": { "type": "boolean", "description": "Whether another page follows" },
            "next_before": { "type": "string", "nullable": true, "description": "`before` for the next page; null on the last" } } });

        let mut listing = operation(
            &format!("The {noun}s the caller may see, by key, with their role"),
            json!({ "200": json_response("A page of scopes", json!({
                "type": "object", "required": ["scopes", "has_more", "next_after"], "properties": {
                    "scopes": { "type": "array", "items": { "type": "object", "required": ["key", "name", "role"], "properties": {
                        "key": { "type": "string" }, "name": { "type": "string" },
                        "role": { "allOf": [role.clone()], "nullable": true, "description": "The caller's role; null when they are no member (an open scope, or an admin)" } } } },
                    "has_more": { "type": "boolean" },
                    "next_after": { "type": "string", "nullable": true, "description": "`after` for the next page; null on the last" } } })) }),
            &[],
        );
        listing["parameters"] = json!([
            limit,
            { "name": "after", "in": "query", "schema": { "type": "string" } } ]);
        paths.insert(format!("/api/{name}"), json!({ "get": listing }));

        let mut snapshot = operation(
            &format!("A page of the {noun}'s items"),
            json!({ "200": json_response(description.snapshot, page) }),
            &[
                ("404", "Unknown scope, or one the caller may not see"),
                ("409", "The item `before` names was deleted since (`cursor_gone`): start again"),
            ],
        );
        snapshot["description"] = json!(description.snapshot);
        snapshot["parameters"] = json!([
            limit,
            { "name": "before", "in": "query", "description": "The previous page's `next_before`", "schema": { "type": "string" } } ]);
        let mut apply = operation(
            "Apply a command; a retry of the same command answers the same, a reused id with another payload is 409",
            json!({ "200": json_response("The resulting event", event.clone()) }),
            &[
                ("403", "Not allowed: a viewer (`read_only`), not the author, a locked element"),
                ("404", "Unknown scope or item, or a scope the caller may not see"),
                ("409", "An id already used for something else (`id_conflict`)"),
                ("413", "A body over `api.max_body_bytes`"),
                ("422", "A command the domain's rules refuse"),
                ("429", "Past the caller's command rate; retry after `Retry-After` seconds"),
            ],
        );
        apply["requestBody"] = json_body(reference(&format!("{title}Request")));
        paths.insert(
            format!("/api/{name}/{{scope}}"),
            json!({ "parameters": [scope_param], "get": snapshot, "post": apply }),
        );

        let mut live = operation(
            &format!("WebSocket: the {noun}'s live events, and commands with a reply each"),
            json!({ "101": { "description": "Switching protocols" } }),
            &[
                ("404", "Unknown scope, or one the caller may not see"),
                ("429", "Too many live sockets for this user"),
                ("503", "This node holds its most live sockets (`server_full`), or is stopping (`shutting_down`)"),
            ],
        );
        live["description"] = json!(format!(
            "The token may come as `?token=`. The client sends `{title}ClientFrame` objects (a command, with an optional `ref`, \
             or a presence signal: `kind` and no `type`); \
             the server sends `{}` objects. Commands from one socket apply in order. A member removed from the {noun} gets a \
             last reply `access_revoked` and the socket closes with 1008; an expired token closes it the same way (`token_expired`).",
            referenced_name(&description.server_frame.as_value().clone()).unwrap_or_default()
        ));
        live["parameters"] = json!([
            { "name": "token", "in": "query", "schema": { "type": "string" } },
            { "name": "presence", "in": "query", "schema": { "type": "boolean", "default": true },
              "description": "false: the socket is not listed in the scope's presence and gets no presence frames" }
        ]);
        live["x-websocket"] = json!({ "client": reference(&format!("{title}ClientFrame")), "server": description.server_frame.as_value().clone() });
        paths.insert(format!("/api/{name}/{{scope}}/live"), json!({ "parameters": [scope_param], "get": live }));

        let members = json_response(
            "The members",
            json!({ "type": "object", "required": ["members"],
            "properties": { "members": { "type": "array", "items": member } } }),
        );
        let not_owner = ("403", "Not an owner of the scope (`owner_required`)");
        let hidden = ("404", "Unknown scope or member, or a scope the caller may not see");
        for prefix in [format!("/api/{name}/{{scope}}"), format!("/api/admin/scopes/{name}/{{scope}}")] {
            paths.insert(format!("{prefix}/members"), json!({ "parameters": [scope_param],
                "get": operation("A scope's members (its owners and admins)", json!({ "200": members }), &[not_owner, hidden]) }));
            let mut put = operation(
                "Add a member or change their role (owners and admins)",
                json!({ "200": json_response("The member", member.clone()) }),
                &[not_owner, hidden, ("413", "A body over the limit"), ("422", "An invalid user id (`invalid_user`)")],
            );
            put["requestBody"] =
                json_body(json!({ "type": "object", "required": ["role"], "additionalProperties": false,
                "properties": { "role": role.clone() } }));
            paths.insert(
                format!("{prefix}/members/{{user}}"),
                json!({ "parameters": [scope_param, user_param],
                "put": put,
                "delete": operation("Remove a member; their live sockets on the scope close (owners and admins)",
                    json!({ "204": { "description": "Removed" } }), &[not_owner, hidden]) }),
            );
        }

        let admin_only = ("403", "Not an admin (`admin_required`)");
        let the_scope = json_response("The scope", scope_schema.clone());
        let mut put = operation(
            &format!("Create a {noun}, or replace its name and config (admin)"),
            json!({ "200": the_scope }),
            &[
                admin_only,
                ("404", "Unknown domain"),
                ("409", "Its purge has not reached the cache yet (`purge_unfinished`): purge it again first"),
                (
                    "503",
                    "The cache must take the purged scope back first (`cache_unavailable`), or a dependency is down",
                ),
                ("413", "A body over the limit"),
                ("422", "An invalid name or config"),
            ],
        );
        let config = description.scope_config.as_value().clone();
        put["requestBody"] = json_body(
            json!({ "type": "object", "required": ["name"], "additionalProperties": false, "properties": {
            "name": { "type": "string", "minLength": 1, "maxLength": crate::routes::admin::MAX_NAME_CHARS }, "config": config } }),
        );
        let mut patch = operation(
            &format!("Rename a {noun} and/or merge into its config (JSON merge patch; admin)"),
            json!({ "200": the_scope }),
            &[
                admin_only,
                ("404", "Unknown scope"),
                ("413", "A body over the limit"),
                ("422", "An invalid name or config"),
            ],
        );
        patch["requestBody"] = json_body(json!({ "type": "object", "additionalProperties": false, "properties": {
            "name": { "type": "string" }, "config": { "type": "object" } } }));
        let mut delete_scope = operation(
            &format!(
                "Delete a {noun} and its members; its items stay in PostgreSQL unless `purge=true`, which deletes \
                 them from PostgreSQL and the cache for good. Its live sockets close (admin)"
            ),
            json!({ "200": json_response("Deleted", json!({ "type": "object", "properties": {
                "deleted": { "type": "object" }, "items": { "type": "string", "enum": ["kept in PostgreSQL", "purged"] },
                "purged": { "type": "object", "properties": {
                    "items": { "type": "integer" }, "events": { "type": "integer" }, "dead_letters": { "type": "integer" } } } } })) }),
            &[
                admin_only,
                ("404", "Nothing to delete: no such scope, no items under that key, never purged"),
                ("409", "Being moved to another shard (`move_in_progress`): purge it once the move is done"),
                ("503", "Purged in PostgreSQL, but the cache was unreachable (`purge_unfinished`): purge again"),
            ],
        );
        delete_scope["operationId"] = json!(format!("delete_{name}_scope"));
        delete_scope["parameters"] = json!([{ "name": "purge", "in": "query",
            "schema": { "type": "boolean", "default": false } }]);
        paths.insert(format!("/api/admin/scopes/{name}/{{scope}}"), json!({ "parameters": [scope_param],
            "put": put, "patch": patch,
            "get": operation(&format!("A {noun} (admin)"), json!({ "200": the_scope }), &[admin_only, ("404", "Unknown scope")]),
            "delete": delete_scope }));
        let already_cold = ("409", "The domain runs on PostgreSQL: there is no cache (`no_cache`)");
        let mut move_scope = operation(
            &format!("Move a {noun} to another cache shard, losing no write (admin)"),
            json!({ "200": json_response("Moved", json!({ "type": "object", "properties": {
                "domain": { "type": "string" }, "scope": { "type": "string" },
                "from": { "type": "string" }, "to": { "type": "string" },
                "drained_ms": { "type": "integer" }, "switched_ms": { "type": "integer" },
                "moved_ms": { "type": "integer" }, "warm_on_target": { "type": "boolean" },
                "cleared_on_source": { "type": "boolean" } } })) }),
            &[
                admin_only,
                ("422", "No such shard (`unknown_shard`)"),
                ("404", "Unknown scope"),
                ("409", "On the PostgreSQL adapter (`no_cache`), on that shard already (`already_there`), or being moved (`move_in_progress`)"),
                ("503", "A shard is not connected (`shard_unavailable`), or the scope's writes did not reach PostgreSQL in time (`move_not_drained`): nothing moved"),
            ],
        );
        move_scope["operationId"] = json!(format!("move_{name}_scope"));
        move_scope["requestBody"] = json!({ "required": true, "content": { "application/json": { "schema": {
            "type": "object", "required": ["to"], "additionalProperties": false,
            "properties": { "to": { "type": "string", "description": "The shard's name" } } } } } });
        paths.insert(
            format!("/api/admin/scopes/{name}/{{scope}}/move"),
            json!({ "parameters": [scope_param], "post": move_scope }),
        );
        paths.insert(format!("/api/admin/warmup/{name}"), json!({ "post": operation(
            &format!("Load every {noun} into the cache again (admin)"), json!({ "202": queued }), &[admin_only, already_cold]) }));
        paths.insert(
            format!("/api/admin/warmup/{name}/{{scope}}"),
            json!({ "parameters": [scope_param], "post": operation(
            &format!("Load one {noun} into the cache again (admin)"), json!({ "202": queued }),
            &[admin_only, already_cold, ("404", "Unknown scope")]) }),
        );
    }

    let mut warmup_get = operation(
        "Every scope's warm-up: state, rows, duration (admin)",
        json!({ "200": json_response("Status", json!({
        "type": "object", "required": ["domains", "scopes"], "properties": {
            "domains": { "type": "object", "additionalProperties": { "type": "object", "properties": {
                "adapter": { "type": "string", "enum": ["spacetimedb", "postgres"] },
                "cache_connected": { "type": "boolean", "nullable": true } } } },
            "scopes": { "type": "array", "items": warmup_status } } })) }),
        &[("403", "Not an admin (`admin_required`)"), ("404", "Unknown domain")],
    );
    warmup_get["parameters"] =
        json!([{ "name": "domain", "in": "query", "schema": { "type": "string", "enum": names } }]);
    paths.insert(
        "/api/admin/warmup".into(),
        json!({
        "get": warmup_get,
        "post": operation("Load every domain's scopes into the cache again (admin)", json!({ "202": queued }),
            &[("403", "Not an admin (`admin_required`)"), ("409", "Every domain runs on PostgreSQL (`no_cache`)")]) }),
    );
    let mut list = operation(
        "Every scope (admin)",
        json!({ "200": json_response("Scopes", json!({ "type": "object",
        "properties": { "scopes": { "type": "array", "items": scope_schema.clone() } } })) }),
        &[("403", "Not an admin (`admin_required`)"), ("404", "Unknown domain")],
    );
    list["parameters"] = json!([{ "name": "domain", "in": "query", "schema": { "type": "string", "enum": names } }]);
    paths.insert("/api/admin/scopes".into(), json!({ "get": list }));

    let admin_only = ("403", "Not an admin (`admin_required`)");
    let number = json!({ "type": "number" });
    paths.insert("/api/admin/outbox".into(), json!({ "get": operation(
        "Each domain's outbox: pending entries, the oldest one's age, lag percentiles since start (the numbers /metrics exports), dead letters, and which node drains it (admin)",
        json!({ "200": json_response("Outbox", json!({ "type": "object", "required": ["domains"], "properties": {
            "domains": { "type": "array", "items": { "type": "object", "properties": {
                "domain": { "type": "string" }, "adapter": { "type": "string" },
                "drainer": { "type": "string", "nullable": true },
                "pending": { "type": "integer" }, "oldest_age_ms": { "type": "integer" },
                "lag_count": { "type": "integer" }, "dead_letters": { "type": "integer" },
                "lag_ms": { "type": "object", "nullable": true, "properties": {
                    "p50": number, "p90": number, "p99": number } },
                "shards": { "type": "array", "items": { "type": "object", "properties": {
                    "shard": { "type": "string" }, "drainer": { "type": "string", "nullable": true },
                    "pending": { "type": "integer" }, "oldest_age_ms": { "type": "integer" } } } } } } } } })) }),
        &[admin_only]) }));
    let mut letters = operation(
        "Outbox entries PostgreSQL refused on their own, oldest first (admin)",
        json!({ "200": json_response("Dead letters", json!({ "type": "object", "required": ["items"], "properties": {
            "items": { "type": "array", "items": { "type": "object", "properties": {
                "id": { "type": "integer" }, "domain": { "type": "string" }, "entity": { "type": "string" },
                "scope": { "type": "string", "nullable": true }, "cache_epoch": { "type": "integer" },
                "seq": { "type": "integer" }, "request_id": { "type": "string" },
                "kind": { "type": "string" }, "payload": {}, "error": { "type": "string" },
                "failed_at": { "type": "string", "format": "date-time" } } } } } })) }),
        &[admin_only, ("404", "Unknown domain")],
    );
    letters["parameters"] = json!([
        { "name": "domain", "in": "query", "schema": { "type": "string", "enum": names } },
        { "name": "limit", "in": "query", "schema": { "type": "integer", "minimum": 1, "maximum": pages.max } }]);
    paths.insert("/api/admin/dead-letters".into(), json!({ "get": letters }));
    let letter_params = json!([
        { "name": "domain", "in": "path", "required": true, "schema": { "type": "string", "enum": names } },
        { "name": "id", "in": "path", "required": true, "schema": { "type": "integer", "format": "int64" } }]);
    let missing_letter = ("404", "No such dead letter in this domain (`dead_letter_not_found`)");
    paths.insert(
        "/api/admin/dead-letters/{domain}/{id}/replay".into(),
        json!({ "parameters": letter_params,
        "post": operation(
            "Write a dead letter into PostgreSQL under the outbox's rules, and remove it (admin)",
            json!({ "200": json_response("Replayed", json!({ "type": "object", "properties": {
                "id": { "type": "integer" }, "written": { "type": "integer" } } })) }),
            &[admin_only, missing_letter, ("409", "PostgreSQL refused it again (`replay_refused`)"),
              ("422", "Its payload is not an item of the domain (`unreadable_dead_letter`)")]) }),
    );
    paths.insert("/api/admin/dead-letters/{domain}/{id}".into(), json!({ "parameters": letter_params,
        "delete": operation("Drop a dead letter for good (admin)",
            json!({ "200": json_response("Discarded", json!({ "type": "object" })) }), &[admin_only, missing_letter]) }));
    let mut login = operation(
        "A token for a typed-in user name: the demo apps' local login (local and test runs only)",
        json!({ "200": json_response("A token", json!({ "type": "object", "required": ["token", "user", "admin"],
            "properties": { "token": { "type": "string" }, "user": { "type": "string" }, "admin": { "type": "boolean" } } })) }),
        &[
            (
                "403",
                "Local login is off here (`dev_login_disabled`), or the caller or the host it names is not this machine \
                 (`dev_login_local_only`)",
            ),
            ("413", "A body over the limit"),
            ("422", "An invalid user id (`invalid_user`)"),
        ],
    );
    login["security"] = json!([]);
    login["requestBody"] = json_body(json!({ "type": "object", "required": ["user"], "additionalProperties": false,
        "properties": { "user": { "type": "string" }, "admin": { "type": "boolean", "default": false } } }));
    paths.insert("/api/dev/login".into(), json!({ "post": login }));

    json!({
        "openapi": "3.0.3",
        "info": { "title": "boardsync", "version": env!("CARGO_PKG_VERSION"),
                  "description": "Collaborative domains with SpacetimeDB as a warm cache in front of PostgreSQL. \
                                  Every error is `ErrorBody` with a stable `code`." },
        "components": {
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer", "bearerFormat": "JWT" } },
            "schemas": schemas,
        },
        "security": [{ "bearer": [] }],
        "paths": paths,
    })
}

#[get("/api/openapi.json")]
pub async fn openapi(state: web::Data<AppState>) -> HttpResponse {
    let document = state.openapi.get_or_init(|| {
        let mut generator = schema_generator();
        let described: Vec<DomainDescription> = state.domains.iter().map(|d| d.describe(&mut generator)).collect();
        document(generator, &described, &PageSizes::of(&state.settings))
    });
    HttpResponse::Ok().json(document)
}
