import type { components } from "./generated/api.js";

type ErrorDetail = components["schemas"]["ErrorDetail"];

/**
 * Every failure the client reports: the server's own errors keep its stable `code`
 * and HTTP status; the client's own (the network, a timeout, a closed scope) have
 * codes of their own and status 0, so callers branch on `code` alone.
 *
 * Client-made codes: `offline` (the server could not be reached), `timeout` (no reply
 * in time), `closed` (the live scope was closed), `bad_response` (not the API's JSON),
 * `no_websocket` / `no_fetch` (no implementation; pass one in the options), `no_token`
 * (the token function threw), `in_doubt` (the connection dropped while the command was on
 * the wire and it is not safe to repeat: it may or may not have been applied),
 * `too_many_resends`.
 */
export class BoardsyncError extends Error {
  /** The server's stable code: "not_author", "scope_not_found", or a client-made one. */
  readonly code: string;
  /** HTTP status (or the live reply's status); 0 for errors made by the client. */
  readonly status: number;
  /** How long the server asked to wait before retrying (429 and 503). */
  readonly retryAfterMs?: number;
  /** On a 500: the id under which the server logged the cause. */
  readonly requestId?: string;

  constructor(code: string, message: string, status = 0, retryAfterMs?: number, requestId?: string) {
    super(message);
    this.name = "BoardsyncError";
    this.code = code;
    this.status = status;
    if (retryAfterMs !== undefined) this.retryAfterMs = retryAfterMs;
    if (requestId !== undefined) this.requestId = requestId;
  }
}

/** An error the server described (an HTTP error body's or a live reply's `error`). */
export function fromDetail(detail: ErrorDetail | null | undefined, status: number, retryAfter?: string | null): BoardsyncError {
  const header = parseRetryAfter(retryAfter);
  const body = detail?.retry_after != null ? detail.retry_after * 1000 : undefined;
  return new BoardsyncError(
    detail?.code ?? "unknown",
    detail?.message ?? `the server answered ${status}`,
    status,
    header ?? body,
    detail?.request_id ?? undefined,
  );
}

/** The error of a non-2xx response; a body that is not the API's (a proxy's page) still gives its status. */
export async function fromResponse(response: Response): Promise<BoardsyncError> {
  let detail: ErrorDetail | undefined;
  try {
    const body = (await response.json()) as { error?: ErrorDetail };
    if (body && typeof body.error?.code === "string") detail = body.error;
  } catch {
    // Not JSON: fall through with the status alone.
  }
  const error = fromDetail(detail, response.status, response.headers.get("retry-after"));
  return detail ? error : new BoardsyncError(`http_${response.status}`, error.message, response.status, error.retryAfterMs);
}

/** Anything thrown (by fetch, a token function, a socket) as a BoardsyncError. */
export function asBoardsyncError(error: unknown, code = "offline"): BoardsyncError {
  if (error instanceof BoardsyncError) return error;
  const message = error instanceof Error ? error.message : String(error);
  return new BoardsyncError(code, message, 0);
}

/** `Retry-After` is delta-seconds or an HTTP date. */
function parseRetryAfter(value: string | null | undefined): number | undefined {
  if (!value) return undefined;
  const seconds = Number(value);
  if (Number.isFinite(seconds)) return Math.max(0, seconds * 1000);
  const date = Date.parse(value);
  return Number.isNaN(date) ? undefined : Math.max(0, date - Date.now());
}
