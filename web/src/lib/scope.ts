/** The scope an app shows: `?scope=` of the page's address, "demo" when absent. */
export const DEFAULT_SCOPE = "demo";

/** Scope keys the apps accept in an address (the server has the final word). */
export function cleanScope(raw: string | null | undefined): string {
  const s = (raw ?? "").trim();
  return s || DEFAULT_SCOPE;
}

/** What a person typed, as a scope key (a-z, 0-9, '_' and '-'): "Team Notes" -> "team-notes". */
export function scopeFromInput(raw: string): string {
  return cleanScope(
    raw
      .trim()
      .toLowerCase()
      .replace(/\s+/g, "-")
      .replace(/[^a-z0-9_-]/g, ""),
  );
}

export function scopeFromUrl(): string {
  return cleanScope(new URLSearchParams(location.search).get("scope"));
}

/** Changes `?scope=` without reloading the page. */
export function pushScope(scope: string): void {
  const url = new URL(location.href);
  url.searchParams.set("scope", scope);
  history.pushState({ scope }, "", url);
}
