/** A stable colour per user name (cursors, avatars). */
export function colorOf(name: string): string {
  let h = 0;
  for (const ch of name) h = (h * 31 + ch.codePointAt(0)!) >>> 0;
  return `hsl(${h % 360} 70% 45%)`;
}

/** "alice" -> "A", "alice-smith" or "Alice Smith" -> "AS" (first letters, emoji-safe). */
export function initials(name: string): string {
  const parts = name.split(/[\s._-]+/).filter(Boolean);
  const first = (s: string | undefined) => (s ? [...s][0] : "");
  const s = parts.length > 1 ? first(parts[0]) + first(parts[1]) : first(name) || "?";
  return s.toUpperCase();
}

const timeFmt = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });
const dayFmt = new Intl.DateTimeFormat(undefined, { weekday: "short", day: "numeric", month: "short" });

const clockFmt = new Intl.DateTimeFormat(undefined, { hour: "numeric", minute: "2-digit", hourCycle: "h23" });

/** Hours and minutes only (the gutter beside a run of messages). */
export function clock(iso: string): string {
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? "" : clockFmt.format(d);
}

export function shortTime(iso: string): string {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return "";
  const today = new Date();
  return d.toDateString() === today.toDateString() ? timeFmt.format(d) : `${dayFmt.format(d)} ${timeFmt.format(d)}`;
}

/** Calls `fn` at most once per `ms`, always delivering the latest arguments. */
export function throttle<A extends unknown[]>(fn: (...args: A) => void, ms: number): (...args: A) => void {
  let last = 0;
  let timer: ReturnType<typeof setTimeout> | null = null;
  let pending: A | null = null;
  return (...args: A) => {
    const now = Date.now();
    const wait = last + ms - now;
    if (wait <= 0 && !timer) {
      last = now;
      fn(...args);
      return;
    }
    pending = args;
    if (!timer) {
      timer = setTimeout(() => {
        timer = null;
        last = Date.now();
        if (pending) fn(...pending);
        pending = null;
      }, Math.max(wait, 0));
    }
  };
}

const DIGITS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const digit = (c: string | undefined) => (c === undefined ? 0 : Math.max(0, DIGITS.indexOf(c)));

/**
 * A fractional ordering key strictly between `low` and `high` (null: the start or
 * end), as the server computes it (domains/core/src/ordering.rs). The apps use it only
 * to show an optimistic move at once; the server's key replaces it.
 */
export function keyBetween(low: string | null, high: string | null): string {
  const lo = low ?? "";
  const hi = high !== null && high > lo ? high : null;
  let key = "";
  for (let i = 0; ; i++) {
    const l = digit(lo[i]);
    const h = hi !== null && hi.slice(0, Math.min(i, hi.length)) === key ? (i < hi.length ? digit(hi[i]) : DIGITS.length) : DIGITS.length;
    if (h > l + 1) return key + DIGITS[(l + h) >> 1];
    key += DIGITS[l];
  }
}

/** Bytewise comparison of ordering keys, then ids (as the server orders equal keys). */
export function byKey(a: string, b: string, idA = "", idB = ""): number {
  if (a !== b) return a < b ? -1 : 1;
  return idA < idB ? -1 : idA > idB ? 1 : 0;
}

/** A `<svelte:boundary>`'s onerror: one item that cannot be drawn (data no one expected) is
 *  reported and left out, instead of taking the whole list down with it. */
export function renderError(error: unknown): void {
  console.error("an item could not be drawn", error);
}
