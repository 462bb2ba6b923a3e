// Where lines go. Writing must never stall the ring-buffer reader: lines are
// batched and handed to a non-blocking writer; while a write is in flight the
// next batch accumulates, up to a bound, past which lines are dropped and
// counted (with one notice when dropping starts and one when it ends).
import type { FileSink } from "bun";

export interface LineSinkOptions {
  /** Lines buffered while the reader of our output is slow, in bytes. */
  maxBufferedBytes: number;
  /** Where notices about dropped lines go. */
  notice: (message: string) => void;
}

export class LineSink {
  #writer: FileSink;
  #pending: string[] = [];
  #pendingBytes = 0;
  #inFlight: Promise<unknown> | null = null;
  #dropping = false;
  #options: LineSinkOptions;
  linesWritten = 0;
  linesDropped = 0;

  constructor(writer: FileSink, options: LineSinkOptions) {
    this.#writer = writer;
    this.#options = options;
  }

  /** Queues one line (without its newline). */
  write(line: string): void {
    // Counted in UTF-16 units: close enough to bytes for a bound.
    if (this.#pendingBytes + line.length + 1 > this.#options.maxBufferedBytes) {
      this.linesDropped++;
      if (!this.#dropping) {
        this.#dropping = true;
        this.#options.notice(
          `output is not being read fast enough: dropping lines beyond ${this.#options.maxBufferedBytes} buffered bytes (counted in linesDropped)`,
        );
      }
      return;
    }
    this.#pending.push(line);
    this.#pendingBytes += line.length + 1;
  }

  /** Hands what is queued to the writer unless a write is still in flight. */
  flush(): void {
    if (this.#inFlight !== null || this.#pending.length === 0) return;
    const count = this.#pending.length;
    const text = `${this.#pending.join("\n")}\n`;
    this.#pending = [];
    this.#pendingBytes = 0;
    this.#writer.write(text);
    this.linesWritten += count;
    const flushed = this.#writer.flush();
    if (flushed instanceof Promise) {
      this.#inFlight = flushed.then(
        () => this.#settled(),
        () => this.#settled(),
      );
    } else {
      this.#recovered();
    }
  }

  #settled(): void {
    this.#inFlight = null;
    this.#recovered();
    this.flush();
  }

  #recovered(): void {
    if (this.#dropping && this.#pendingBytes === 0) {
      this.#dropping = false;
      this.#options.notice(`output is being read again; ${this.linesDropped} lines dropped so far`);
    }
  }

  /** Writes everything queued and waits until the writer has taken it. */
  async close(): Promise<void> {
    while (this.#inFlight !== null || this.#pending.length > 0) {
      if (this.#inFlight !== null) await this.#inFlight;
      else this.flush();
    }
    await this.#writer.flush();
  }
}
