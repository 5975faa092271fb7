/**
 * The few plain HTTP calls the apps make besides the client's: the local login, and
 * the admin's scope and member routes (the demo creates what it shows).
 */
import { BoardsyncClient, BoardsyncError, type DomainName } from "@boardsync/client";
import { currentToken } from "./auth";

export type Role = "viewer" | "editor" | "owner";

/** One client per page; it asks for the token again on each reconnect. */
export const client = new BoardsyncClient({ baseUrl: "", token: () => currentToken() });

export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/** The message to show a person for any error the apps meet. */
export function describeError(err: unknown): string {
  if (err instanceof BoardsyncError || err instanceof HttpError) {
    return err.message || err.code;
  }
  if (err instanceof Error) return err.message;
  return String(err);
}

export function errorCode(err: unknown): string | undefined {
  if (err instanceof BoardsyncError || err instanceof HttpError) return err.code;
  return undefined;
}

async function request<T>(method: string, path: string, body?: unknown, token = currentToken()): Promise<T> {
  const headers: Record<string, string> = {};
  if (token) headers.authorization = `Bearer ${token}`;
  if (body !== undefined) headers["content-type"] = "application/json";
  let res: Response;
  try {
    res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (err) {
    throw new HttpError(0, "offline", `The server cannot be reached (${describeError(err)})`);
  }
  const text = await res.text();
  let json: any = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    /* not JSON */
  }
  if (!res.ok) {
    const detail = json?.error;
    throw new HttpError(
      res.status,
      detail?.code ?? `http_${res.status}`,
      detail?.message ?? (text.slice(0, 200) || res.statusText),
    );
  }
  return json as T;
}

/** POST /api/dev/login: a token for any typed-in name (local and test settings only). */
export function devLogin(user: string, admin: boolean): Promise<{ token: string; user?: string }> {
  return request("POST", "/api/dev/login", { user, admin }, "");
}

export interface ScopeListing {
  scopes: { key: string; name: string; role: Role | null }[];
  has_more: boolean;
  next_after: string | null;
}

/** The scopes of a domain the caller may see (first page). */
export function listScopes(domain: DomainName, limit = 100): Promise<ScopeListing> {
  return request("GET", `/api/${domain}?limit=${limit}`);
}

/**
 * A scope's display name (as an admin set it), or null when the caller cannot see the
 * scope or it is not found in the first few pages of the listing.
 */
export async function scopeName(domain: DomainName, scope: string): Promise<string | null> {
  let after: string | null = null;
  for (let page = 0; page < 10; page++) {
    const query: string = after === null ? "" : `&after=${encodeURIComponent(after)}`;
    const listing: ScopeListing = await request("GET", `/api/${domain}?limit=500${query}`);
    const found = listing.scopes.find((s) => s.key === scope);
    if (found) return found.name;
    if (!listing.has_more || !listing.next_after) return null;
    after = listing.next_after;
  }
  return null;
}

const seg = encodeURIComponent;

/** Creates (or replaces) a scope; `open` lets every signed-in user write to it. */
export function createScope(domain: DomainName, scope: string, name: string, open: boolean): Promise<unknown> {
  const body: Record<string, unknown> = { name };
  if (open) body.config = { access: { authenticated: "write" } };
  return request("PUT", `/api/admin/scopes/${domain}/${seg(scope)}`, body);
}

/** Adds or changes a member (an admin or the scope's owners may). */
export function putMember(domain: DomainName, scope: string, user: string, role: Role): Promise<unknown> {
  return request("PUT", `/api/${domain}/${seg(scope)}/members/${seg(user)}`, { role });
}

export function removeMember(domain: DomainName, scope: string, user: string): Promise<unknown> {
  return request("DELETE", `/api/${domain}/${seg(scope)}/members/${seg(user)}`);
}

export interface Member {
  user: string;
  role: Role;
}

export async function listMembers(domain: DomainName, scope: string): Promise<Member[]> {
  const body = await request<any>("GET", `/api/${domain}/${seg(scope)}/members`);
  const list = Array.isArray(body) ? body : (body?.members ?? body?.items ?? []);
  return list.filter((m: any) => m && typeof m.user === "string");
}
