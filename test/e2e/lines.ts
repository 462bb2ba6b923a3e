/**
 * Collects the lines of a child's output stream as they arrive and lets a test wait for lines
 * matching a predicate. Used for the agent's stdout and the peers' reports.
 */
interface Waiter<T> {
  predicate: (item: T) => boolean;
  count: number;
  /** the items that matched so far: each new item is tested once, not the whole list again */
  found: T[];
  resolve: (items: T[]) => void;
  reject: (error: Error) => void;
  timer: ReturnType<typeof setTimeout>;
}

/** Matching lines a failed wait lists. */
const MATCHES_SHOWN = 20;

/** Lines as a failure message lists them: one a line, indented. */
export const indented = (lines: readonly string[]): string => lines.map((l) => "  " + l).join("\n");

export class LineCollector<T> {
  /** every line, in order */
  readonly lines: string[] = [];
  /** every line turned into an item by `convert` (lines it returned undefined for are left out) */
  readonly items: T[] = [];
  /** resolves when the stream has ended and every line is in */
  readonly done: Promise<void>;
  #ended = false;
  #endReason = "the stream ended";
  /** more for a failed wait's message (the agent's stderr beside its stdout) */
  #context: () => string = () => "";
  readonly #waiters = new Set<Waiter<T>>();

  constructor(
    stream: ReadableStream<Uint8Array>,
    private readonly convert: (line: string) => T | undefined,
    private readonly describe: (item: T) => string = (item) => JSON.stringify(item),
  ) {
    this.done = this.#read(stream);
  }

  async #read(stream: ReadableStream<Uint8Array>): Promise<void> {
    const decoder = new TextDecoder();
    let pending = "";
    try {
      for await (const chunk of stream) {
        pending += decoder.decode(chunk, { stream: true });
        let nl: number;
        while ((nl = pending.indexOf("\n")) >= 0) {
          this.#add(pending.slice(0, nl));
          pending = pending.slice(nl + 1);
        }
      }
      pending += decoder.decode();
      if (pending) this.#add(pending);
    } finally {
      this.#ended = true;
      for (const w of this.#waiters) this.#fail(w, `${this.#endReason} before ${w.count} matching line(s) arrived`);
    }
  }

  #add(line: string): void {
    this.lines.push(line);
    const item = this.convert(line);
    if (item === undefined) return;
    this.items.push(item);
    for (const w of this.#waiters) {
      if (!w.predicate(item)) continue;
      w.found.push(item);
      if (w.found.length >= w.count) {
        clearTimeout(w.timer);
        this.#waiters.delete(w);
        w.resolve(w.found);
      }
    }
  }

  #fail(w: Waiter<T>, why: string): void {
    clearTimeout(w.timer);
    this.#waiters.delete(w);
    const seen = this.items.filter(w.predicate);
    // A wait for thousands of lines lists only its first matches, so that the count stays in sight.
    const shown = seen.slice(0, MATCHES_SHOWN).map((i) => this.describe(i));
    if (seen.length > MATCHES_SHOWN) shown.push(`... and ${seen.length - MATCHES_SHOWN} more`);
    w.reject(
      new Error(`${why}; ${seen.length} of ${w.count} matched:\n${indented(shown)}\nlast lines:\n${indented(this.lines.slice(-5))}${this.#context()}`),
    );
  }

  /** Adds what `context` returns to the message of every failed wait. */
  setFailureContext(context: () => string): void {
    this.#context = context;
  }

  /** Says why the stream ended, for the messages of waits that can no longer succeed. */
  setEndReason(reason: string): void {
    this.#endReason = reason;
  }

  /** Items matching `predicate` so far. */
  filter(predicate: (item: T) => boolean): T[] {
    return this.items.filter(predicate);
  }

  /**
   * Resolves with all matching items once at least `count` have arrived (they may already have);
   * rejects after `timeoutMs` or when the stream ends first, listing what did match.
   */
  waitFor(predicate: (item: T) => boolean, count = 1, timeoutMs = 10_000): Promise<T[]> {
    const found = this.items.filter(predicate);
    if (found.length >= count) return Promise.resolve(found);
    return new Promise((resolve, reject) => {
      const w: Waiter<T> = {
        predicate,
        count,
        found,
        resolve,
        reject,
        timer: setTimeout(() => this.#fail(w, `timed out after ${timeoutMs} ms waiting for ${count} line(s)`), timeoutMs),
      };
      if (this.#ended) {
        this.#fail(w, `${this.#endReason} before ${count} matching line(s) arrived`);
        return;
      }
      this.#waiters.add(w);
    });
  }
}
