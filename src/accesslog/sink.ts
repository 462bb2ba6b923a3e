// Where lines go. Writing must never stall the ring-buffer reader, whoever reads our stdout and
// however slowly.
//
// Each record's line is written as bytes (format.ts) straight into a chunk; flush() hands the
// chunks to a non-blocking writer (Bun's FileSink: it takes a copy of what it cannot write at
// once, so a chunk is free for new lines as soon as write() returns). While a write is in flight
// the next lines accumulate in chunks, up to a bound on the bytes held (in our chunks and in the
// writer's hands together); past it, lines are dropped and counted, with one notice when
// dropping starts and one when the reader has caught up again (the bytes held fell below half
// the bound). A write that fails (EPIPE: the reader has gone) ends the sink: its lines and all
// that follow are dropped, and `failed` is told once.
import { type AccessRecord, type LineFormat, WRITE_SLACK } from "./format.ts";

/** What the sink needs of Bun's FileSink. */
export interface ByteWriter {
  /**
   * Must be done with `bytes` when it returns: FileSink copies what it cannot write at once. A
   * Promise when the writing goes on after it returns; it rejects if that fails (EPIPE).
   */
  write(bytes: Uint8Array): number | Promise<number>;
  /** A number when everything is written, a Promise while the reader is behind. */
  flush(): number | Promise<number>;
}

export interface LineSinkOptions {
  /** Lines buffered while the reader of our output is slow, in bytes. */
  maxBufferedBytes: number;
  /** Where notices about dropped lines go. */
  notice: (message: string) => void;
  /** Size of the chunks lines are written into (default 256 KiB). */
  chunkBytes?: number;
  /** Told once, when a write fails: nothing more is written. */
  failed?: (error: unknown) => void;
}

export const DEFAULT_CHUNK_BYTES = 256 << 10;
/**
 * Room kept free for the next line: lines are some hundred bytes; one with very long names that
 * does not fit is written again into a chunk sized by the format's bound.
 */
const LINE_ROOM = 2048;
/**
 * Chunks kept for reuse once written: enough for what one drain writes at a high rate (1M lines/s
 * for 10 ms is about 4.5 MB); beyond that they go to the GC.
 */
const SPARE_BYTES = 4 << 20;
const NEWLINE = 0x0a;
const textEncoder = new TextEncoder();

export class LineSink {
  readonly #writer: ByteWriter;
  readonly #format: LineFormat;
  readonly #notice: (message: string) => void;
  readonly #failed: (error: unknown) => void;
  readonly #maxBuffered: number;
  readonly #chunkBytes: number;
  /** Where lines are written now; filled up to #used. */
  #chunk: Uint8Array;
  #used = 0;
  /** Chunks filled before #chunk, oldest first, each to its full length. */
  #full: Uint8Array[] = [];
  #spare: Uint8Array[] = [];
  /** Lines in #full and #chunk. */
  #queuedLines = 0;
  /** Bytes in #full and #chunk plus those handed to a write still in flight. */
  #buffered = 0;
  #inFlight: Promise<unknown> | null = null;
  #inFlightBytes = 0;
  #inFlightLines = 0;
  #dropping = false;
  /** A write failed: the sink takes no more. */
  #broken = false;
  linesWritten = 0;
  linesDropped = 0;

  constructor(writer: ByteWriter, format: LineFormat, options: LineSinkOptions) {
    this.#writer = writer;
    this.#format = format;
    this.#notice = options.notice;
    this.#failed = options.failed ?? (() => undefined);
    this.#maxBuffered = options.maxBufferedBytes;
    this.#chunkBytes = options.chunkBytes ?? DEFAULT_CHUNK_BYTES;
    this.#chunk = new Uint8Array(this.#chunkBytes);
  }

  /** Bytes held: queued here and handed to a write that has not completed. */
  get bufferedBytes(): number {
    return this.#buffered;
  }

  /** Queues the line of one record. */
  add(record: AccessRecord): void {
    if (this.#broken) return void this.linesDropped++;
    this.#makeRoom();
    // A full buffer is the common case while the reader is stopped: no formatting for nothing.
    if (this.#buffered >= this.#maxBuffered) return this.#drop();
    if (this.#used + LINE_ROOM > this.#chunk.length) this.#needRoom(LINE_ROOM);
    let end = this.#tryWrite(record);
    if (end < 0) {
      this.#nextChunk(this.#format.maxBytes(record) + 1 + WRITE_SLACK);
      end = this.#format.write(record, this.#chunk, 0);
    }
    this.#chunk[end] = NEWLINE;
    this.#accept(end + 1 - this.#used);
  }

  /** Where the line of `record` ends in the current chunk, or -1 when it did not fit. */
  #tryWrite(record: AccessRecord): number {
    try {
      const end = this.#format.write(record, this.#chunk, this.#used);
      return end + 1 + WRITE_SLACK <= this.#chunk.length ? end : -1;
    } catch (error) {
      if (error instanceof RangeError) return -1;
      throw error;
    }
  }

  /** Queues one line given as text (without its newline). */
  write(line: string): void {
    if (this.#broken) return void this.linesDropped++;
    this.#makeRoom();
    if (this.#buffered >= this.#maxBuffered) return this.#drop();
    const room = 3 * line.length + 1; // UTF-8 bytes per UTF-16 unit at most, and the newline
    if (this.#used + room > this.#chunk.length) this.#needRoom(room);
    const start = this.#used;
    const { written } = textEncoder.encodeInto(line, this.#chunk.subarray(start));
    this.#chunk[start + written] = NEWLINE;
    this.#accept(written + 1);
  }

  /**
   * Near the bound with no write in flight (a burst within one drain), hands what is queued to the
   * writer now: lines are dropped only while the reader is behind, not because they came at once.
   */
  #makeRoom(): void {
    if (this.#buffered + LINE_ROOM > this.#maxBuffered && this.#inFlight === null) this.flush();
  }

  /** Keeps the line just written at #used, or drops it when it would pass the bound. */
  #accept(size: number): void {
    if (this.#buffered + size > this.#maxBuffered) return this.#drop();
    this.#used += size;
    this.#buffered += size;
    this.#queuedLines++;
  }

  #drop(): void {
    this.linesDropped++;
    if (this.#dropping) return;
    this.#dropping = true;
    this.#notice(
      `output is not being read fast enough: dropping lines beyond ${this.#maxBuffered} buffered bytes (counted in linesDropped)`,
    );
  }

  /**
   * Makes `room` bytes free after #used: a full chunk goes to the writer at once when no write is
   * in flight (so with a writer that keeps up, one chunk is all the memory lines take, however
   * many come in one drain), else lines go on in a new chunk.
   */
  #needRoom(room: number): void {
    if (this.#inFlight === null && this.#queuedLines > 0 && room <= this.#chunk.length) {
      this.flush();
      if (this.#used + room <= this.#chunk.length) return;
    }
    this.#nextChunk(room);
  }

  /** Starts a chunk with at least `room` bytes free. */
  #nextChunk(room: number): void {
    if (this.#used > 0) this.#full.push(this.#chunk.subarray(0, this.#used));
    else this.#reuse(this.#chunk);
    const reused = room <= this.#chunkBytes ? this.#spare.pop() : undefined;
    this.#chunk = reused ?? new Uint8Array(Math.max(room, this.#chunkBytes));
    this.#used = 0;
  }

  /** Keeps a chunk of the usual size (not one made for an oversized line) for new lines. */
  #reuse(chunk: Uint8Array): void {
    if (chunk.buffer.byteLength === this.#chunkBytes && (this.#spare.length + 1) * this.#chunkBytes <= SPARE_BYTES) {
      this.#spare.push(new Uint8Array(chunk.buffer));
    }
  }

  /** Hands what is queued to the writer unless a write is still in flight. */
  flush(): void {
    if (this.#inFlight !== null || this.#queuedLines === 0 || this.#broken) return;
    const full = this.#full;
    this.#full = [];
    const last = this.#chunk.subarray(0, this.#used);
    this.#used = 0;
    this.linesWritten += this.#queuedLines;
    this.#inFlightLines = this.#queuedLines;
    this.#queuedLines = 0;
    this.#inFlightBytes = this.#buffered;
    // The writer's Promises: what it has not taken yet (a write's may reject later: EPIPE).
    const pending: Promise<number>[] = [];
    const wait = (result: number | Promise<number>) => void (result instanceof Promise && pending.push(result));
    try {
      for (const chunk of full) {
        wait(this.#writer.write(chunk));
        this.#reuse(chunk);
      }
      if (last.length > 0) wait(this.#writer.write(last));
      wait(this.#writer.flush());
    } catch (error) {
      return this.#fail(error);
    }
    if (pending.length === 0) return this.#settled();
    // What came in meanwhile goes as soon as the reader has taken this.
    this.#inFlight = Promise.all(pending).then(
      () => {
        this.#settled();
        this.flush();
      },
      (error: unknown) => this.#fail(error),
    );
  }

  /** The lines handed to the failed write, and those queued, count as dropped; no more are taken. */
  #fail(error: unknown): void {
    if (this.#broken) return;
    this.#broken = true;
    this.#inFlight = null;
    this.linesWritten -= this.#inFlightLines;
    this.linesDropped += this.#inFlightLines + this.#queuedLines;
    this.#inFlightLines = this.#queuedLines = this.#buffered = this.#inFlightBytes = 0;
    this.#full = [];
    this.#failed(error);
  }

  #settled(): void {
    this.#inFlight = null;
    this.#inFlightLines = 0;
    this.#buffered -= this.#inFlightBytes;
    this.#inFlightBytes = 0;
    if (this.#dropping && this.#buffered < this.#maxBuffered / 2) {
      this.#dropping = false;
      this.#notice(`output is being read again; ${this.linesDropped} lines dropped so far`);
    }
  }

  /** Writes everything queued and waits until the writer has taken it. */
  async close(): Promise<void> {
    for (;;) {
      if (this.#inFlight !== null) await this.#inFlight;
      else if (this.#queuedLines > 0 && !this.#broken) this.flush();
      else break;
    }
    if (this.#broken) return;
    try {
      await this.#writer.flush();
    } catch (error) {
      this.#fail(error);
    }
  }
}

