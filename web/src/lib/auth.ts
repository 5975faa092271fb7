/**
 * Who is signed in. The token lives in sessionStorage (one person per tab, so two
 * windows can be two people) with a copy in localStorage that a fresh tab starts from.
 */

const KEY = "boardsync.token";

export interface Identity {
  token: string;
  user: string;
  admin: boolean;
  /** Seconds since the epoch, when the token says. */
  exp?: number;
}

/** The claims of a JWT, unverified (the server checks it; this only names the user). */
export function decodeToken(token: string): { sub?: string; admin?: boolean; exp?: number } | null {
  const parts = token.split(".");
  if (parts.length !== 3) return null;
  try {
    const b64 = parts[1].replace(/-/g, "+").replace(/_/g, "/");
    const padded = b64 + "=".repeat((4 - (b64.length % 4)) % 4);
    const bytes = Uint8Array.from(atob(padded), (c) => c.charCodeAt(0));
    const claims = JSON.parse(new TextDecoder().decode(bytes));
    return claims && typeof claims === "object" ? claims : null;
  } catch {
    return null;
  }
}

function identityOf(token: string | null): Identity | null {
  if (!token) return null;
  const claims = decodeToken(token);
  if (!claims || typeof claims.sub !== "string") return null;
  if (typeof claims.exp === "number" && claims.exp * 1000 < Date.now()) return null;
  return { token, user: claims.sub, admin: claims.admin === true, exp: claims.exp };
}

function read(storage: Storage | undefined): string | null {
  try {
    return storage?.getItem(KEY) ?? null;
  } catch {
    return null;
  }
}

/** The signed-in identity of this tab, or null. */
export function currentIdentity(): Identity | null {
  const own = identityOf(read(globalThis.sessionStorage));
  if (own) return own;
  const shared = identityOf(read(globalThis.localStorage));
  if (shared) {
    try {
      sessionStorage.setItem(KEY, shared.token);
    } catch {
      /* private mode */
    }
  }
  return shared;
}

export function currentToken(): string {
  return currentIdentity()?.token ?? "";
}

/** Stores a token for this tab (and as the default of new tabs). */
export function signIn(token: string): Identity | null {
  const id = identityOf(token);
  if (!id) return null;
  try {
    sessionStorage.setItem(KEY, token);
    localStorage.setItem(KEY, token);
  } catch {
    /* private mode */
  }
  return id;
}

export function signOut(): void {
  try {
    sessionStorage.removeItem(KEY);
    localStorage.removeItem(KEY);
  } catch {
    /* private mode */
  }
}

export const BASE = import.meta.env.BASE_URL;

/** The login page's address, coming back to `next` (this page by default). */
export function loginUrl(next: string = location.pathname + location.search): string {
  return `${BASE}index.html?next=${encodeURIComponent(next)}`;
}

/** The identity, or null after starting a redirect to the login page. */
export function requireIdentity(): Identity | null {
  const id = currentIdentity();
  if (!id) location.replace(loginUrl());
  return id;
}
