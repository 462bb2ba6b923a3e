// The kernel's BPF ring buffer, read in place. The layout is the kernel's ABI (kernel/bpf/ringbuf.c,
// include/uapi/linux/bpf.h): the map's file maps as one page holding the consumer position (ours to
// write), one page holding the producer position, then the data area twice in a row, so that a
// record that wraps past the end still lies in one piece. Each record is an 8-byte header (its length
// with BPF_RINGBUF_BUSY_BIT while the kernel still writes it and BPF_RINGBUF_DISCARD_BIT when it
// was thrown away, then the page offset the kernel keeps), the record itself, and padding to 8 bytes.
//
// Reading it from JavaScript over the mapped memory means no call into native code per record (the
// libbpf reader calls back once per record) and no copy: each record is handed over where it lies,
// and the consumer position moves past it only once the handler has returned.
//
// The producer page and the data area are mapped read-only, and JavaScriptCore's Atomics.load
// faults there (it uses an instruction that writes), so they are read with plain loads. That is
// enough on x86-64, the architecture this agent is built for: loads are not reordered with other
// loads, so the record is read after the length the kernel published last.
import { type Pointer, toArrayBuffer } from "bun:ffi";
import { HOST_LE } from "./host.ts";
import { libc } from "./libc.ts";

/** The record's header: a u32 length with these two flags in its top bits, and a u32 page offset. */
export const RINGBUF_BUSY_BIT = 0x8000_0000;
export const RINGBUF_DISCARD_BIT = 0x4000_0000;
export const RINGBUF_HEADER_BYTES = 8;
const LENGTH_MASK = ~(RINGBUF_BUSY_BIT | RINGBUF_DISCARD_BIT);

/** Receives one record: `length` bytes at `offset` of `view`, valid only until it returns. */
export type RecordHandler = (view: DataView, offset: number, length: number) => void;

/** The three parts of a mapped ring buffer, as views on memory the kernel shares with us. */
export interface RingBufferArea {
  /** The first 8 bytes of the consumer page: the consumer position (u64), written by the reader. */
  readonly consumer: BigUint64Array;
  /** The first 8 bytes of the producer page: the producer position (u64, read as two u32 words). */
  readonly producer: Uint32Array;
  /** The data area, mapped twice in a row: 2 x size bytes. */
  readonly data: ArrayBuffer;
  /** Bytes of data: a power of two. */
  readonly size: number;
}

/** Index of the low u32 word of a u64 in host order. */
const LO = HOST_LE ? 0 : 1;

/**
 * Reads the records of a ring buffer in place. Positions are u64 counts of bytes that only grow;
 * the reader keeps its own as two u32 halves (exact however long the agent runs) and compares only
 * the low halves with the producer's, whose distance never exceeds the size of the ring.
 */
export class RingBufferReader {
  readonly #area: RingBufferArea;
  readonly #view: DataView;
  readonly #words: Int32Array;
  readonly #mask: number;
  #lo: number;
  #hi: number;

  constructor(area: RingBufferArea) {
    if (!(area.size >= 8 && (area.size & (area.size - 1)) === 0) || area.data.byteLength < 2 * area.size) {
      throw new RangeError(`a ring buffer's data area is a power of two mapped twice (${area.size} bytes, ${area.data.byteLength} mapped)`);
    }
    this.#area = area;
    this.#view = new DataView(area.data);
    this.#words = new Int32Array(area.data);
    this.#mask = area.size - 1;
    const start = area.consumer[0]!;
    this.#lo = Number(start & 0xffff_ffffn);
    this.#hi = Number(start >> 32n);
  }

  /** Bytes the kernel has written (or is writing) that have not been read. */
  pending(): number {
    return (this.#area.producer[LO]! - this.#lo) >>> 0;
  }

  /**
   * Hands every committed record to `onRecord`, oldest first, up to `max` of them, and returns
   * how many it handed over. Discarded records are stepped over; a record the kernel is still
   * writing ends the read (it and what follows come next time). The consumer position is
   * published once, at the end, even when a handler throws, so the kernel may reuse that space.
   */
  read(onRecord: RecordHandler, max = Number.POSITIVE_INFINITY): number {
    const words = this.#words;
    const view = this.#view;
    const mask = this.#mask;
    let lo = this.#lo;
    let read = 0;
    try {
      for (;;) {
        let available = (this.#area.producer[LO]! - lo) >>> 0;
        if (available === 0 || read >= max) break;
        while (available >= RINGBUF_HEADER_BYTES && read < max) {
          const at = lo & mask;
          // The kernel publishes the length last, clearing the busy bit.
          const header = words[at >> 2]!;
          if (header & RINGBUF_BUSY_BIT) return read;
          const length = header & LENGTH_MASK;
          const step = (length + RINGBUF_HEADER_BYTES + 7) & ~7;
          // Never past what the kernel says it wrote (a length no kernel writes).
          if (step > available) return read;
          // Past it before the handler runs (a handler that throws does not see it again); the
          // kernel learns only in `finally`, after the handler is done with it.
          lo = (lo + step) >>> 0;
          available -= step;
          if ((header & RINGBUF_DISCARD_BIT) === 0) {
            read++;
            onRecord(view, at + RINGBUF_HEADER_BYTES, length);
          }
        }
      }
      return read;
    } finally {
      this.#advance(lo);
    }
  }

  #advance(lo: number): void {
    if (lo === this.#lo) return;
    if (lo < this.#lo) this.#hi++;
    this.#lo = lo;
    Atomics.store(this.#area.consumer, 0, (BigInt(this.#hi) << 32n) | BigInt(lo));
  }
}

const PROT_READ = 1;
const PROT_WRITE = 2;
const MAP_SHARED = 1;
const MAP_FAILED = -1n;

/** A ring buffer map mapped into this process; unmap() once nothing reads it any more. */
export interface MappedRingBuffer {
  readonly area: RingBufferArea;
  unmap(): void;
}

/**
 * Maps the ring buffer behind `fd` (a BPF_MAP_TYPE_RINGBUF of `size` bytes) as libbpf does: the
 * consumer page read-write, the producer page and the doubled data area read-only. Returns null
 * and leaves errno set when the kernel refuses either mapping.
 */
export function mapRingBuffer(fd: number, size: number): MappedRingBuffer | null {
  const page = libc.getpagesize();
  const consumerAt = libc.mmap(null, page, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0n);
  if (consumerAt === MAP_FAILED) return null;
  const dataBytes = page + 2 * size;
  const producerAt = libc.mmap(null, dataBytes, PROT_READ, MAP_SHARED, fd, BigInt(page));
  if (producerAt === MAP_FAILED) {
    libc.munmap(Number(consumerAt) as Pointer, page);
    return null;
  }
  const consumer = Number(consumerAt) as Pointer;
  const producer = Number(producerAt) as Pointer;
  return {
    area: {
      consumer: new BigUint64Array(toArrayBuffer(consumer, 0, 8)),
      producer: new Uint32Array(toArrayBuffer(producer, 0, 8)),
      data: toArrayBuffer(producer, page, 2 * size),
      size,
    },
    unmap() {
      libc.munmap(producer, dataBytes);
      libc.munmap(consumer, page);
    },
  };
}
