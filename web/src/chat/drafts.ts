/**
 * Per-channel composer drafts, kept while the page lives: what the composer held when
 * its channel was left, and the text of sends that failed because the channel was
 * closed before they went (queued offline, or unanswered). Shown again on coming back.
 */
const failed = new Map<string, string[]>();
const typed = new Map<string, string>();

/** A send failed because its channel was closed: its text goes back to that channel's composer. */
export function keepFailedSend(scope: string, text: string): void {
  failed.set(scope, [...(failed.get(scope) ?? []), text]);
}

/** What the composer held when the channel was left. */
export function keepTyped(scope: string, text: string): void {
  if (text.trim()) typed.set(scope, text);
  else typed.delete(scope);
}

/** The channel's draft, to put in its composer when it opens (then forgotten here). */
export function takeDraft(scope: string): string {
  const parts = [...(failed.get(scope) ?? []), typed.get(scope) ?? ""].filter((part) => part.trim());
  failed.delete(scope);
  typed.delete(scope);
  return parts.join("\n");
}
