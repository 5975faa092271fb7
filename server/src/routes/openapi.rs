//! `GET /api/openapi.json`: an OpenAPI 3.0 description of the API, with the running
//! domains listed in the `{domain}` parameter.

use actix_web::{get, web, HttpResponse};
use serde_json::{json, Value};

use crate::startup::AppState;

fn error_response(description: &str) -> Value {
    json!({ "description": description, "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } })
}

fn errors(statuses: &[(&str, &str)]) -> serde_json::Map<String, Value> {
    statuses.iter().map(|(status, what)| (status.to_string(), error_response(what))).collect()
}

pub fn document(domains: &[&str]) -> Value {
    let domain_param =
        json!({ "name": "domain", "in": "path", "required": true, "schema": { "type": "string", "enum": domains } });
    let scope_param = json!({ "name": "scope", "in": "path", "required": true,
        "schema": { "type": "string", "pattern": "^[a-z0-9][a-z0-9_-]{0,63}$" } });
    let member_param = json!({ "name": "user", "in": "path", "required": true, "schema": { "type": "string" } });
    let mut snapshot_responses = errors(&[
        ("400", "Bad query"),
        ("401", "No or invalid token"),
        ("404", "Unknown domain or scope, or one the user may not see"),
        ("503", "The scope is warming or a dependency is down (Retry-After)"),
    ]);
    snapshot_responses.insert("200".into(), json!({ "description": "Items, newest first", "content": { "application/json": { "schema": {
        "type": "object", "properties": { "items": { "type": "array", "items": { "type": "object" } }, "next_before": { "type": "string", "nullable": true } } } } } }));
    let mut command_responses = errors(&[
        ("400", "Malformed JSON"),
        ("401", "No or invalid token"),
        ("403", "Not allowed (a viewer, not the author, a locked element)"),
        ("404", "Unknown domain, scope or item, or a scope the user may not see"),
        ("409", "Conflicting id"),
        ("413", "Body over api.max_body_bytes"),
        ("422", "Invalid command"),
        ("429", "Past the user's command rate (Retry-After)"),
        ("503", "The scope is warming or a dependency is down (Retry-After)"),
    ]);
    command_responses.insert("200".into(), json!({ "description": "The resulting event", "content": { "application/json": { "schema": { "type": "object" } } } }));
    json!({
        "openapi": "3.0.3",
        "info": { "title": "boardsync", "version": env!("CARGO_PKG_VERSION"),
                  "description": "Collaborative domains with SpacetimeDB as a warm cache in front of PostgreSQL." },
        "components": {
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer", "bearerFormat": "JWT" } },
            "schemas": {
                "Error": { "type": "object", "required": ["error"], "properties": { "error": { "type": "object",
                    "required": ["code", "message"], "properties": { "code": { "type": "string" }, "message": { "type": "string" } } } } },
                "Command": { "type": "object", "required": ["type"], "additionalProperties": true, "properties": {
                    "type": { "type": "string" }, "durability": { "type": "string", "enum": ["cache", "durable"] } } },
                "ScopeBody": { "type": "object", "required": ["name"], "properties": {
                    "name": { "type": "string" }, "config": { "type": "object" } } },
                "MemberBody": { "type": "object", "required": ["role"], "properties": {
                    "role": { "type": "string", "enum": ["owner", "editor", "viewer"] } } }
            }
        },
        "security": [{ "bearer": [] }],
        "paths": {
            "/health": { "get": { "summary": "Dependency status and the adapter in use", "security": [],
                "responses": { "200": { "description": "Healthy" }, "503": { "description": "A dependency is down" } } } },
            "/metrics": { "get": { "summary": "Prometheus metrics", "security": [], "responses": { "200": { "description": "Text format" } } } },
            "/api/{domain}": {
                "parameters": [domain_param],
                "get": { "summary": "The scopes the caller may see, by key", "parameters": [
                        { "name": "limit", "in": "query", "schema": { "type": "integer", "minimum": 1 } },
                        { "name": "after", "in": "query", "schema": { "type": "string" } } ],
                    "responses": { "200": { "description": "`{\"scopes\": [{\"key\", \"name\", \"role\"}], \"next_after\": key-or-null}`" },
                                   "400": error_response("Bad limit"), "401": error_response("No or invalid token"),
                                   "404": error_response("Unknown domain") } }
            },
            "/api/{domain}/{scope}": {
                "parameters": [domain_param, scope_param],
                "get": { "summary": "Snapshot of a scope", "parameters": [
                        { "name": "limit", "in": "query", "schema": { "type": "integer", "minimum": 1 } },
                        { "name": "before", "in": "query", "schema": { "type": "string" } } ],
                    "responses": snapshot_responses },
                "post": { "summary": "Apply a command", "requestBody": { "required": true, "content": { "application/json": {
                        "schema": { "$ref": "#/components/schemas/Command" } } } },
                    "responses": command_responses }
            },
            "/api/{domain}/{scope}/live": {
                "parameters": [domain_param, scope_param],
                "get": { "summary": "WebSocket: live events, and commands with a reply each",
                    "responses": { "101": { "description": "Switching protocols" }, "401": error_response("No or invalid token"),
                                   "404": error_response("Unknown domain or scope") } }
            },
            "/api/admin/warmup": { "get": { "summary": "Every scope's warm-up status (admin)", "responses": { "200": { "description": "Status" } } },
                "post": { "summary": "Re-warm every domain on the cache (admin)", "responses": { "202": { "description": "Queued" },
                    "409": error_response("No domain runs on the cache") } } },
            "/api/admin/scopes": { "get": { "summary": "List scopes (admin)", "parameters": [
                    { "name": "domain", "in": "query", "schema": { "type": "string", "enum": domains } } ],
                "responses": { "200": { "description": "Scopes" }, "401": error_response("No or invalid token"), "403": error_response("Not an admin") } } },
            "/api/admin/scopes/{domain}/{scope}": {
                "parameters": [domain_param, scope_param],
                "put": { "summary": "Create or update a scope (admin)", "requestBody": { "required": true, "content": {
                        "application/json": { "schema": { "$ref": "#/components/schemas/ScopeBody" } } } },
                    "responses": { "200": { "description": "The scope" }, "401": error_response("No or invalid token"),
                                   "403": error_response("Not an admin"), "404": error_response("Unknown domain"),
                                   "422": error_response("Invalid name or config") } },
                "get": { "summary": "A scope (admin)", "responses": { "200": { "description": "The scope" },
                                   "404": error_response("Unknown domain or scope") } },
                "patch": { "summary": "Rename a scope and/or merge into its config (JSON merge patch; admin)",
                    "requestBody": { "required": true, "content": { "application/json": { "schema": { "type": "object",
                        "properties": { "name": { "type": "string" }, "config": { "type": "object" } } } } } },
                    "responses": { "200": { "description": "The scope" }, "404": error_response("Unknown domain or scope"),
                                   "422": error_response("Invalid name or config") } },
                "delete": { "summary": "Delete a scope and its members; its items stay in PostgreSQL (admin)",
                    "responses": { "200": { "description": "Deleted" }, "404": error_response("Unknown domain or scope") } }
            },
            "/api/{domain}/{scope}/members": {
                "parameters": [domain_param, scope_param],
                "get": { "summary": "A scope's members (its owners and admins)",
                    "responses": { "200": { "description": "`{\"members\": [{\"user\", \"role\"}]}`" },
                                   "403": error_response("Not an owner"), "404": error_response("Unknown scope, or one the user may not see") } }
            },
            "/api/{domain}/{scope}/members/{user}": {
                "parameters": [domain_param, scope_param, member_param],
                "put": { "summary": "Add a member or change their role (owners and admins)",
                    "requestBody": { "required": true, "content": { "application/json": { "schema": { "$ref": "#/components/schemas/MemberBody" } } } },
                    "responses": { "200": { "description": "The member" }, "403": error_response("Not an owner"),
                                   "404": error_response("Unknown scope, or one the user may not see") } },
                "delete": { "summary": "Remove a member; their live sockets on the scope close (owners and admins)",
                    "responses": { "204": { "description": "Removed" }, "403": error_response("Not an owner"),
                                   "404": error_response("Unknown scope or member") } }
            },
            "/api/openapi.json": { "get": { "summary": "This document", "security": [], "responses": { "200": { "description": "OpenAPI 3.0" } } } }
        }
    })
}

#[get("/api/openapi.json")]
pub async fn openapi(state: web::Data<AppState>) -> HttpResponse {
    let names: Vec<&str> = state.domains.names().collect();
    HttpResponse::Ok().json(document(&names))
}
