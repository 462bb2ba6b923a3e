// The ring-buffer reader over a fake mapped area laid out as the kernel's (kernel/bpf/ringbuf.c):
// the data area twice in a row, 8-byte headers (length with the busy and discard bits, then the
// page offset), records padded to 8 bytes, positions that only grow. FakeRing plays the kernel.
import { describe, expect, test } from "bun:test";
import { RINGBUF_BUSY_BIT, RINGBUF_DISCARD_BIT, RINGBUF_HEADER_BYTES, RingBufferReader } from "../../../src/kernel/ring-buffer.ts";

/** The kernel's side of a ring of `size` bytes whose positions start at `start`. */
class FakeRing {
  readonly consumer = new BigUint64Array(1);
  readonly producer = new Uint32Array(2);
  readonly data: ArrayBuffer;
  readonly #bytes: Uint8Array;
  #produced: bigint;

  constructor(
    readonly size: number,
    start = 0n,
  ) {
    this.data = new ArrayBuffer(2 * size);
    this.#bytes = new Uint8Array(this.data);
    this.consumer[0] = start;
    this.#produced = start;
    this.#publish();
  }

  get area() {
    return { consumer: this.consumer, producer: this.producer, data: this.data, size: this.size };
  }

  /** Reserves `length` bytes (the busy bit set) and returns where the record's header is. */
  reserve(length: number): bigint {
    const at = this.#produced;
    const step = BigInt((length + RINGBUF_HEADER_BYTES + 7) & ~7);
    if (at + step - this.consumer[0]! > BigInt(this.size)) throw new Error("the fake ring is full");
    this.#header(at, (length | RINGBUF_BUSY_BIT) >>> 0);
    this.#produced += step;
    this.#publish();
    return at;
  }

  /** Fills the record at `at` with `payload` and clears the busy bit (or sets the discard bit). */
  commit(at: bigint, payload: Uint8Array, discard = false): void {
    for (let i = 0; i < payload.length; i++) this.#write(at + BigInt(RINGBUF_HEADER_BYTES + i), payload[i]!);
    this.#header(at, discard ? (payload.length | RINGBUF_DISCARD_BIT) >>> 0 : payload.length);
  }

  /** Reserves and commits a record at once. */
  push(payload: Uint8Array, discard = false): bigint {
    const at = this.reserve(payload.length);
    this.commit(at, payload, discard);
    return at;
  }

  /** Writes a header of any length at the producer position, as a broken kernel would. */
  pushRawHeader(header: number, step: number): void {
    this.#header(this.#produced, header >>> 0);
    this.#produced += BigInt(step);
    this.#publish();
  }

  #header(at: bigint, length: number): void {
    for (let i = 0; i < 4; i++) this.#write(at + BigInt(i), (length >>> (8 * i)) & 0xff);
    for (let i = 4; i < 8; i++) this.#write(at + BigInt(i), 0);
  }

  /** One byte at a ring position, in both mappings of the data area. */
  #write(position: bigint, byte: number): void {
    const at = Number(position % BigInt(this.size));
    this.#bytes[at] = byte;
    this.#bytes[at + this.size] = byte;
  }

  #publish(): void {
    this.producer[0] = Number(this.#produced & 0xffff_ffffn);
    this.producer[1] = Number(this.#produced >> 32n);
  }
}

/** `length` bytes counting up from `first`. */
const payload = (length: number, first = 0) => Uint8Array.from({ length }, (_, i) => (first + i) & 0xff);

/** What read() handed over: each record's bytes, copied while it was lent. */
function collect(reader: RingBufferReader, max?: number): { count: number; records: number[][] } {
  const records: number[][] = [];
  const count = reader.read((view, offset, length) => {
    records.push(Array.from(new Uint8Array(view.buffer, view.byteOffset + offset, length)));
  }, max);
  return { count, records };
}

describe("RingBufferReader", () => {
  test("hands over each committed record in order and gives the space back once", () => {
    const ring = new FakeRing(4096);
    ring.push(payload(112, 1));
    ring.push(payload(5, 200)); // padded to 8 after its header
    ring.push(payload(112, 7));
    const reader = new RingBufferReader(ring.area);
    expect(reader.pending()).toBe(120 + 16 + 120);
    expect(collect(reader)).toEqual({ count: 3, records: [Array.from(payload(112, 1)), Array.from(payload(5, 200)), Array.from(payload(112, 7))] });
    expect(ring.consumer[0]).toBe(256n);
    expect(reader.pending()).toBe(0);
    expect(collect(reader)).toEqual({ count: 0, records: [] });
    expect(ring.consumer[0]).toBe(256n);
  });

  test("a record across the end of the data area comes in one piece (the second mapping)", () => {
    const ring = new FakeRing(1024, 1024n * 5n - 64n); // 64 bytes before the end, after five laps
    const reader = new RingBufferReader(ring.area);
    ring.push(payload(112, 3)); // header at 960, record to 1080: 56 bytes past the end
    ring.push(payload(112, 9)); // wholly in the next lap
    expect(collect(reader)).toEqual({ count: 2, records: [Array.from(payload(112, 3)), Array.from(payload(112, 9))] });
    expect(ring.consumer[0]).toBe(1024n * 5n - 64n + 240n);
  });

  test("positions past 2^32 bytes: the consumer position keeps its high word", () => {
    const start = 2n ** 32n - 120n; // the second record crosses 2^32
    const ring = new FakeRing(4096, start);
    const reader = new RingBufferReader(ring.area);
    ring.push(payload(112, 1));
    ring.push(payload(112, 2));
    expect(collect(reader).count).toBe(2);
    expect(ring.consumer[0]).toBe(start + 240n);
    ring.push(payload(112, 3));
    expect(collect(reader).records).toEqual([Array.from(payload(112, 3))]);
    expect(ring.consumer[0]).toBe(start + 360n);
  });

  test("discarded records are stepped over, and their space given back", () => {
    const ring = new FakeRing(4096);
    ring.push(payload(112, 1), true);
    ring.push(payload(112, 2));
    ring.push(payload(40, 3), true);
    const reader = new RingBufferReader(ring.area);
    expect(collect(reader)).toEqual({ count: 1, records: [Array.from(payload(112, 2))] });
    expect(ring.consumer[0]).toBe(120n + 120n + 48n);
  });

  test("a record still being written (busy) stops the read; it and those after it come once it is committed", () => {
    const ring = new FakeRing(4096);
    ring.push(payload(112, 1));
    const busy = ring.reserve(112);
    ring.push(payload(112, 3)); // committed, but after the busy one
    const reader = new RingBufferReader(ring.area);
    expect(collect(reader)).toEqual({ count: 1, records: [Array.from(payload(112, 1))] });
    expect(ring.consumer[0]).toBe(120n); // not past the busy record
    expect(collect(reader).count).toBe(0);
    ring.commit(busy, payload(112, 2));
    expect(collect(reader)).toEqual({ count: 2, records: [Array.from(payload(112, 2)), Array.from(payload(112, 3))] });
    expect(ring.consumer[0]).toBe(360n);
  });

  test("a record longer than expected is handed over whole, with its length; the next one follows it", () => {
    const ring = new FakeRing(4096);
    ring.push(payload(300, 1));
    ring.push(payload(112, 2));
    const reader = new RingBufferReader(ring.area);
    const lengths: number[] = [];
    reader.read((_view, _offset, length) => void lengths.push(length));
    expect(lengths).toEqual([300, 112]);
    expect(ring.consumer[0]).toBe(312n + 120n);
  });

  test("a header claiming more than the kernel published is not followed: nothing past the producer is read", () => {
    const ring = new FakeRing(4096);
    ring.push(payload(112, 1));
    ring.pushRawHeader(2000, 16); // says 2000 bytes; the producer moved 16
    const reader = new RingBufferReader(ring.area);
    expect(collect(reader).count).toBe(1);
    expect(ring.consumer[0]).toBe(120n);
  });

  test("at most `max` records per read; the rest come next time", () => {
    const ring = new FakeRing(4096);
    for (let i = 0; i < 5; i++) ring.push(payload(112, i));
    const reader = new RingBufferReader(ring.area);
    expect(collect(reader, 2).count).toBe(2);
    expect(ring.consumer[0]).toBe(240n);
    expect(collect(reader, 2).records).toEqual([Array.from(payload(112, 2)), Array.from(payload(112, 3))]);
    expect(collect(reader).count).toBe(1);
  });

  test("records the kernel commits while a read is under way are read in the same call", () => {
    const ring = new FakeRing(4096);
    ring.push(payload(112, 1));
    const reader = new RingBufferReader(ring.area);
    let handed = 0;
    reader.read(() => {
      if (++handed === 1) ring.push(payload(112, 2));
    });
    expect(handed).toBe(2);
    expect(ring.consumer[0]).toBe(240n);
  });

  test("a handler that throws: the error goes up, the record is consumed, the next read goes on after it", () => {
    const ring = new FakeRing(4096);
    ring.push(payload(112, 1));
    ring.push(payload(112, 2));
    const reader = new RingBufferReader(ring.area);
    expect(() =>
      reader.read(() => {
        throw new Error("handler failed");
      }),
    ).toThrow("handler failed");
    expect(ring.consumer[0]).toBe(120n);
    expect(collect(reader).records).toEqual([Array.from(payload(112, 2))]);
  });

  test("a full ring is drained exactly, lap after lap", () => {
    const ring = new FakeRing(1024);
    const reader = new RingBufferReader(ring.area);
    let next = 0;
    let seen = 0;
    for (let lap = 0; lap < 20; lap++) {
      // 8 records of 112 + 8 fill 960 of 1024 bytes; a 56-byte one leaves 0 free.
      for (let i = 0; i < 8; i++) ring.push(payload(112, next++));
      ring.push(payload(56, next++));
      expect(() => ring.push(payload(1))).toThrow("full");
      const { count, records } = collect(reader);
      expect(count).toBe(9);
      for (const r of records) expect(r[0]).toBe(seen++ & 0xff);
      expect(reader.pending()).toBe(0);
    }
    expect(ring.consumer[0]).toBe(20n * 1024n);
  });

  test("the area must be a power of two mapped twice", () => {
    const area = (size: number, bytes: number) => ({ consumer: new BigUint64Array(1), producer: new Uint32Array(2), data: new ArrayBuffer(bytes), size });
    expect(() => new RingBufferReader(area(1000, 2000))).toThrow(RangeError);
    expect(() => new RingBufferReader(area(1024, 1024))).toThrow(RangeError);
    expect(() => new RingBufferReader(area(1024, 2048))).not.toThrow();
  });
});
