// Polling that never overlaps itself: the next run starts `intervalMs` after the
// previous one finished. Returns a stop function (use it as an $effect's cleanup).
export function poll(intervalMs: number, run: () => Promise<void> | void): () => void {
  let stopped = false;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const tick = async () => {
    try {
      await run();
    } catch (error) {
      console.warn("console poll failed", error);
    }
    if (!stopped) timer = setTimeout(tick, intervalMs);
  };
  void tick();
  return () => {
    stopped = true;
    if (timer !== undefined) clearTimeout(timer);
  };
}
