// The line sink: bytes in order, bounded while the reader is slow, drops counted with one notice
// each way, and lines flowing again once the reader catches up; a failed write (the reader gone)
// ends it, said once, every line after it counted as dropped.
import { describe, expect, test } from "bun:test";
import { type AccessRecord, KmeshText } from "../../../src/accesslog/format.ts";
import { type ByteWriter, LineSink } from "../../../src/accesslog/sink.ts";
import { formatKmeshLine, SEED_RECORD } from "../fixtures.ts";

/** A writer that copies what it is given (as FileSink does) and can stop taking it. */
class FakeWriter implements ByteWriter {
  /** what the reader has read */
  readonly output: Uint8Array[] = [];
  #held: Uint8Array[] = [];
  #waiting: (() => void)[] = [];
  stopped = false;
  flushes = 0;

  write(bytes: Uint8Array): number {
    this.#held.push(bytes.slice());
    return bytes.length;
  }

  flush(): number | Promise<number> {
    this.flushes++;
    if (!this.stopped) return this.#deliver();
    return new Promise((resolve) => this.#waiting.push(() => resolve(this.#deliver())));
  }

  #deliver(): number {
    const n = this.#held.reduce((sum, b) => sum + b.length, 0);
    this.output.push(...this.#held);
    this.#held = [];
    return n;
  }

  /** The reader reads again: everything held is taken. */
  async resume(): Promise<void> {
    this.stopped = false;
    for (const wake of this.#waiting.splice(0)) wake();
    await Bun.sleep(0);
  }

  text(): string {
    return Buffer.concat(this.output).toString("utf8");
  }

  lines(): string[] {
    const text = this.text();
    return text === "" ? [] : text.slice(0, -1).split("\n");
  }
}

const base: AccessRecord = { ...SEED_RECORD, dstService: null, state: "BPF_TCP_CLOSE" };
const nth = (i: number): AccessRecord => ({ ...base, srcPort: 1000 + i, sentBytes: i });
const LINE_BYTES = formatKmeshLine(base).length + 1; // every nth(i) line is within a few bytes of this

function sinkFor(writer: FakeWriter, o: { maxBufferedBytes?: number; chunkBytes?: number } = {}) {
  const notices: string[] = [];
  const sink = new LineSink(writer, new KmeshText(), {
    maxBufferedBytes: o.maxBufferedBytes ?? 64 << 20,
    chunkBytes: o.chunkBytes,
    notice: (m) => notices.push(m),
  });
  return { sink, notices };
}

describe("LineSink", () => {
  test("writes each record's line and a newline, in order, across many chunks", async () => {
    const writer = new FakeWriter();
    // Small chunks: lines end at every possible place relative to a chunk's end.
    const { sink } = sinkFor(writer, { chunkBytes: 4096 });
    const expected: string[] = [];
    for (let i = 0; i < 3000; i++) {
      sink.add(nth(i));
      expected.push(formatKmeshLine(nth(i)));
      if (i % 97 === 0) sink.flush();
    }
    await sink.close();
    expect(writer.lines()).toEqual(expected);
    expect(sink.linesWritten).toBe(3000);
    expect(sink.linesDropped).toBe(0);
    expect(sink.bufferedBytes).toBe(0);
  });

  test("text lines and record lines share the order", async () => {
    const writer = new FakeWriter();
    const { sink } = sinkFor(writer);
    sink.add(nth(1));
    sink.write("plain text, ünïcode");
    sink.add(nth(2));
    await sink.close();
    expect(writer.lines()).toEqual([formatKmeshLine(nth(1)), "plain text, ünïcode", formatKmeshLine(nth(2))]);
  });

  test("a line longer than a chunk gets a chunk of its own", async () => {
    const writer = new FakeWriter();
    const { sink } = sinkFor(writer, { chunkBytes: 1024 });
    const long = { ...base, srcWorkload: "x".repeat(5000), dstWorkload: "é".repeat(2000) };
    sink.add(nth(1));
    sink.add(long);
    sink.add(nth(2));
    sink.flush();
    sink.add(long);
    sink.add(nth(3));
    await sink.close();
    expect(writer.lines()).toEqual([nth(1), long, nth(2), long, nth(3)].map(formatKmeshLine));
  });

  test("nothing is written before flush(), and one flush() hands over everything queued", () => {
    const writer = new FakeWriter();
    const { sink } = sinkFor(writer);
    for (let i = 0; i < 100; i++) sink.add(nth(i));
    expect(writer.output).toEqual([]);
    expect(sink.bufferedBytes).toBeGreaterThan(90 * LINE_BYTES);
    sink.flush();
    expect(writer.lines().length).toBe(100);
    expect(writer.flushes).toBe(1);
    expect(sink.linesWritten).toBe(100);
    expect(sink.bufferedBytes).toBe(0);
  });

  test("a full chunk goes to a writer that keeps up at once: one chunk holds what a drain writes", () => {
    const writer = new FakeWriter();
    const { sink } = sinkFor(writer, { chunkBytes: 8192 });
    let most = 0;
    for (let i = 0; i < 5000; i++) {
      sink.add(nth(i));
      most = Math.max(most, sink.bufferedBytes);
    }
    expect(most).toBeLessThanOrEqual(8192);
    expect(writer.lines().length).toBeGreaterThan(4900);
    sink.flush();
    expect(writer.lines()).toEqual(Array.from({ length: 5000 }, (_, i) => formatKmeshLine(nth(i))));
  });

  test("a stopped reader: bounded buffering, then drops with one notice; lines flow again when it reads", async () => {
    const writer = new FakeWriter();
    const bound = 100 * LINE_BYTES;
    const { sink, notices } = sinkFor(writer, { maxBufferedBytes: bound, chunkBytes: 8192 });
    writer.stopped = true;

    // The first batch is handed over and stays in flight: the reader does not take it.
    for (let i = 0; i < 10; i++) sink.add(nth(i));
    sink.flush();
    // Meanwhile the drain goes on: lines queue up to the bound, the rest are dropped.
    let added = 10;
    for (let round = 0; round < 50; round++) {
      for (let i = 0; i < 20; i++) sink.add(nth(added++));
      sink.flush(); // nothing happens while a write is in flight
    }
    expect(sink.bufferedBytes).toBeLessThanOrEqual(bound);
    expect(sink.bufferedBytes).toBeGreaterThan(bound - 2 * LINE_BYTES);
    // About 100 lines are held (10 in flight, the rest queued); every other one was dropped.
    expect(sink.linesDropped).toBeGreaterThanOrEqual(added - 100);
    expect(sink.linesDropped).toBeLessThanOrEqual(added - 97);
    expect(notices).toHaveLength(1);
    expect(notices[0]).toMatch(/^output is not being read fast enough: dropping lines beyond \d+ buffered bytes/);
    expect(writer.lines()).toEqual([]);

    // The reader reads again: what was in flight, then everything queued behind it.
    await writer.resume();
    await Bun.sleep(0);
    expect(notices).toHaveLength(2);
    expect(notices[1]).toBe(`output is being read again; ${sink.linesDropped} lines dropped so far`);
    const dropped = sink.linesDropped;
    for (let i = 0; i < 10; i++) sink.add(nth(added++));
    await sink.close();
    expect(sink.linesDropped).toBe(dropped);
    const lines = writer.lines();
    expect(lines.length + dropped).toBe(added);
    expect(sink.linesWritten).toBe(lines.length);
    // Lines are whole and in order; the dropped ones are simply missing.
    const sent = lines.map((line) => Number(/sent_bytes=(\d+),/.exec(line)?.[1]));
    expect(sent).toEqual([...sent].sort((a, b) => a - b));
    expect(lines.at(-1)).toBe(formatKmeshLine(nth(added - 1)));
  });

  test("a slow reader that keeps up within the bound loses nothing", async () => {
    const writer = new FakeWriter();
    const { sink, notices } = sinkFor(writer, { maxBufferedBytes: 200 * LINE_BYTES, chunkBytes: 4096 });
    for (let round = 0; round < 20; round++) {
      writer.stopped = true;
      for (let i = 0; i < 50; i++) sink.add(nth(round * 50 + i));
      sink.flush();
      for (let i = 0; i < 50; i++) sink.add(nth(1000 + round * 50 + i));
      await writer.resume();
    }
    await sink.close();
    expect(sink.linesDropped).toBe(0);
    expect(notices).toEqual([]);
    expect(writer.lines()).toHaveLength(2000);
  });

  test("a burst bigger than the bound, to a reader that keeps up, loses nothing", async () => {
    const writer = new FakeWriter();
    const { sink, notices } = sinkFor(writer, { maxBufferedBytes: 20 * LINE_BYTES, chunkBytes: 4096 });
    for (let i = 0; i < 1000; i++) sink.add(nth(i)); // one drain's worth, no flush() in between
    await sink.close();
    expect(sink.linesDropped).toBe(0);
    expect(notices).toEqual([]);
    expect(writer.lines()).toEqual(Array.from({ length: 1000 }, (_, i) => formatKmeshLine(nth(i))));
  });

  test("a line that would pass the bound is dropped whole", async () => {
    const writer = new FakeWriter();
    const { sink, notices } = sinkFor(writer, { maxBufferedBytes: LINE_BYTES * 2 + LINE_BYTES / 2 });
    writer.stopped = true;
    for (let i = 0; i < 3; i++) sink.add(nth(i));
    expect(sink.linesDropped).toBe(1);
    expect(notices).toHaveLength(1);
    await writer.resume();
    await sink.close();
    expect(writer.lines()).toEqual([nth(0), nth(1)].map(formatKmeshLine));
  });

  test("a write that throws (EPIPE) ends the sink: said once, its lines and all later ones dropped", async () => {
    const epipe = Object.assign(new Error("EPIPE: broken pipe, write"), { code: "EPIPE" });
    let writes = 0;
    const failures: unknown[] = [];
    const sink = new LineSink(
      {
        write: () => {
          writes++;
          throw epipe;
        },
        flush: () => 0,
      },
      new KmeshText(),
      { maxBufferedBytes: 1 << 20, notice: () => undefined, failed: (e) => failures.push(e) },
    );
    for (let i = 0; i < 3; i++) sink.add(nth(i));
    sink.flush();
    sink.write("a text line");
    sink.add(nth(3));
    sink.flush();
    await sink.close();
    expect(failures).toEqual([epipe]);
    expect(writes).toBe(1);
    expect([sink.linesWritten, sink.linesDropped, sink.bufferedBytes]).toEqual([0, 5, 0]);
  });

  test("a flush that rejects ends the sink once the write in flight fails; lines written before stay counted", async () => {
    const writer = new FakeWriter();
    const failures: unknown[] = [];
    const sink = new LineSink(writer, new KmeshText(), { maxBufferedBytes: 1 << 20, notice: () => undefined, failed: (e) => failures.push(e) });
    sink.add(nth(0));
    sink.flush(); // taken at once
    let reject: (e: unknown) => void = () => undefined;
    writer.flush = () => new Promise((_, r) => (reject = r));
    sink.add(nth(1));
    sink.add(nth(2));
    sink.flush(); // in flight
    sink.add(nth(3)); // queued behind it
    expect([sink.linesWritten, sink.linesDropped]).toEqual([3, 0]);
    const gone = new Error("EPIPE");
    reject(gone);
    await sink.close();
    expect(failures).toEqual([gone]);
    expect([sink.linesWritten, sink.linesDropped, sink.bufferedBytes]).toEqual([1, 3, 0]);
    sink.add(nth(4));
    expect([sink.linesWritten, sink.linesDropped]).toEqual([1, 4]);
    expect(writer.lines()).toEqual([formatKmeshLine(nth(0))]);
  });

  test("a write that fails after it returned (FileSink's Promise on a pipe): its lines were in flight, and are dropped", async () => {
    const failures: unknown[] = [];
    const gone = Object.assign(new Error("EPIPE: broken pipe, write"), { code: "EPIPE" });
    let writes = 0;
    const sink = new LineSink(
      { write: () => (++writes === 1 ? 1 : Promise.reject(gone)), flush: () => 0 },
      new KmeshText(),
      { maxBufferedBytes: 1 << 20, notice: () => undefined, failed: (e) => failures.push(e) },
    );
    sink.add(nth(0));
    sink.flush();
    sink.add(nth(1));
    sink.flush(); // in flight until the write's Promise settles
    sink.add(nth(2)); // queued behind it
    await sink.close();
    expect(failures).toEqual([gone]);
    expect(writes).toBe(2);
    expect([sink.linesWritten, sink.linesDropped]).toEqual([1, 2]);
  });
});
