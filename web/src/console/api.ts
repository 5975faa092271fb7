// The console's HTTP layer: plain fetch with the admin token from localStorage.
// The console talks to the same origin that serves it (the server serves the built
// apps at /app/), so every path is absolute from the origin.

import { currentToken } from "../lib/auth";

/** The token the login form on index.html stored ("boardsync.token": this tab's
 *  sessionStorage first, then localStorage), or null when signed out or expired. */
export function getToken(): string | null {
  return currentToken() || null;
}

export class ApiError extends Error {
  readonly status: number;
  readonly code: string;
  constructor(status: number, code: string, message: string) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** A request with the bearer token; JSON in and out. Errors become ApiError with the server's code. */
export async function api<T = unknown>(method: string, path: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = {};
  const token = getToken();
  if (token) headers.authorization = `Bearer ${token}`;
  if (body !== undefined) headers["content-type"] = "application/json";
  let response: Response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (error) {
    throw new ApiError(0, "offline", error instanceof Error ? error.message : String(error));
  }
  const text = await response.text();
  let parsed: unknown = undefined;
  if (text) {
    try {
      parsed = JSON.parse(text);
    } catch {
      parsed = text;
    }
  }
  if (!response.ok) {
    const error = (parsed as { error?: { code?: string; message?: string } } | undefined)?.error;
    throw new ApiError(
      response.status,
      error?.code ?? `http_${response.status}`,
      error?.message ?? `${method} ${path}: ${response.status} ${response.statusText}`,
    );
  }
  return parsed as T;
}

/** True for the answers that mean "this token is not an admin's". */
export function isDenied(error: unknown): boolean {
  return error instanceof ApiError && (error.status === 401 || error.status === 403);
}

/** True when an endpoint this server does not have yet answered 404 (or 405). */
export function isMissing(error: unknown): boolean {
  return error instanceof ApiError && (error.status === 404 || error.status === 405);
}

export function describe(error: unknown): string {
  if (error instanceof ApiError) return `${error.code}: ${error.message}`;
  return error instanceof Error ? error.message : String(error);
}

export const enc = encodeURIComponent;

// ---- shapes (server/src/routes/*.rs and the client contract) ----

export type Role = "owner" | "editor" | "viewer";
export const ROLES: Role[] = ["owner", "editor", "viewer"];

export interface Scope {
  domain: string;
  key: string;
  name: string;
  config: Record<string, unknown>;
  created_at: string;
  updated_at: string;
}

export interface Member {
  user: string;
  role: Role;
}

export type WarmupState = "pending" | "warming" | "warm" | "failed" | "disabled";

export interface WarmupStatus {
  domain: string;
  scope: string;
  state: WarmupState;
  priority: number;
  rows_loaded: number;
  rows_total: number;
  duration_ms: number | null;
  load_ms: number | null;
  cache_ms: number | null;
  error: string | null;
  runs: number;
  generation: number | null;
  updated_at: string;
}

export interface WarmupResponse {
  domains: Record<string, { adapter: string; cache_connected: boolean | null }>;
  scopes: WarmupStatus[];
}

export interface OutboxDomain {
  domain: string;
  adapter: string;
  pending: number;
  oldest_age_ms: number | null;
  /** Lag samples behind the percentiles (since the server started). */
  lag_count?: number;
  lag_ms: { p50: number | null; p90: number | null; p99: number | null } | null;
  dead_letters: number;
}

export interface DeadLetter {
  id: number | string;
  domain: string;
  entity: string;
  kind: string;
  /** The entity's state the cache committed (JSON), or the unreadable row as text. */
  payload: unknown;
  /** What PostgreSQL said. */
  error: string;
  /** When it was set aside (`created_at` in the first draft of the contract). */
  failed_at?: string;
  created_at?: string;
  cache_epoch?: number;
  seq?: number;
  request_id?: string;
}

export interface DependencyHealth {
  status: "up" | "down" | "not_configured";
  latency_ms?: number;
  error?: string;
}

export interface Health {
  status: "ok" | "degraded" | "shutting_down";
  adapter: string;
  postgres: DependencyHealth;
  spacetimedb: DependencyHealth;
  domains: Record<string, { adapter: string; cache_connected: boolean | null }>;
}

/** GET /health answers 503 with the same body when degraded: read it either way. */
export async function fetchHealth(): Promise<Health> {
  const response = await fetch("/health");
  const body = (await response.json()) as Health;
  return body;
}

export function formatMs(ms: number | null | undefined): string {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return "–";
  if (ms === 0) return "0 ms";
  if (ms < 0.995) return `${ms.toFixed(2)} ms`;
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  return `${Math.floor(ms / 60_000)} min ${Math.round((ms % 60_000) / 1000)} s`;
}

/** The time of day, with the date too when it is not today. */
export function formatTime(iso: string | null | undefined): string {
  if (!iso) return "–";
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return iso;
  return date.toDateString() === new Date().toDateString() ? date.toLocaleTimeString() : date.toLocaleString();
}

/** How long ago, roughly ("just now", "42 s ago", "5 min ago", "3 h ago"), then the date. */
export function formatAgo(iso: string | null | undefined, now = Date.now()): string {
  if (!iso) return "–";
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return iso;
  const s = Math.max(0, Math.round((now - t) / 1000));
  if (s < 5) return "just now";
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86_400) return `${Math.floor(s / 3600)} h ago`;
  return new Date(t).toLocaleDateString();
}
