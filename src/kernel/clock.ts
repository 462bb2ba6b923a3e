// Kernel timestamps (bpf_ktime_get_ns) are CLOCK_MONOTONIC nanoseconds; the log prints wall-clock
// time to the nanosecond digit. The offset between the two clocks is measured once at start-up
// (and again on recalibrate(), e.g. after the wall clock was stepped) by reading CLOCK_MONOTONIC,
// CLOCK_REALTIME, CLOCK_MONOTONIC back to back and keeping the tightest bracket: the error is at
// most half that bracket, typically well under a microsecond. Second-rounded uptime (/proc/uptime,
// Go's boot-time tricks) would be off by up to a second.
//
// Wall time stays as integer seconds plus integer nanoseconds all the way: a single float of
// ~1.7e18 ns would round to 256 ns steps.

import { HOST_LE } from "./host.ts";
import { libc } from "./libc.ts";

/** Seconds since the Unix epoch and integer nanoseconds 0..999999999. */
export type WallTime = { sec: number; nsec: number };

/** A reading of one clock: seconds and nanoseconds 0..999999999, as in struct timespec. */
export type Timespec = { sec: number; nsec: number };

export interface Clock {
  /** Wall-clock time of a kernel CLOCK_MONOTONIC time. */
  toWall(monotonic: Timespec): WallTime;
  /** toWall, written into `into` (no new object: the line path calls it twice per record). */
  toWallInto(monotonic: Timespec, into: WallTime): WallTime;
  /** CLOCK_MONOTONIC now, in ns (the kernel's bpf_ktime_get_ns scale). */
  nowMonotonicNs(): number;
  /** Measure the offset again (the wall clock may have been stepped since). */
  recalibrate(): void;
}

/** One calibration sample: CLOCK_MONOTONIC, then CLOCK_REALTIME, then CLOCK_MONOTONIC. */
export interface CalibrationSample {
  monoBefore: Timespec;
  real: Timespec;
  monoAfter: Timespec;
}

const NS_PER_SEC = 1_000_000_000;
const CLOCK_REALTIME = 0;
const CLOCK_MONOTONIC = 1;
const CALIBRATION_SAMPLES = 16;

function diffNs(a: Timespec, b: Timespec): number {
  return (b.sec - a.sec) * NS_PER_SEC + (b.nsec - a.nsec);
}

/**
 * The REALTIME - MONOTONIC offset (nsec normalised to 0..999999999, sec may be any integer) from
 * the sample with the tightest bracket, pairing its real reading with the bracket's midpoint.
 */
export function offsetFromSamples(samples: readonly CalibrationSample[]): Timespec {
  let best: CalibrationSample | undefined;
  let bestWidth = Infinity;
  for (const s of samples) {
    const width = diffNs(s.monoBefore, s.monoAfter);
    if (width >= 0 && width < bestWidth) {
      best = s;
      bestWidth = width;
    }
  }
  if (best === undefined) throw new Error("clock calibration: no usable sample");

  // midpoint = monoBefore + floor(width / 2), carried in seconds and nanoseconds
  let midSec = best.monoBefore.sec;
  let midNsec = best.monoBefore.nsec + Math.floor(bestWidth / 2);
  midSec += Math.floor(midNsec / NS_PER_SEC);
  midNsec %= NS_PER_SEC;

  let sec = best.real.sec - midSec;
  let nsec = best.real.nsec - midNsec;
  if (nsec < 0) {
    nsec += NS_PER_SEC;
    sec -= 1;
  }
  return { sec, nsec };
}

/** The wall time of the CLOCK_MONOTONIC time `mono` given the REALTIME - MONOTONIC offset. */
export function monotonicToWall(offsetSec: number, offsetNsec: number, mono: Timespec, into: WallTime = { sec: 0, nsec: 0 }): WallTime {
  const nsec = offsetNsec + mono.nsec;
  const carry = nsec >= NS_PER_SEC ? 1 : 0;
  into.sec = offsetSec + mono.sec + carry;
  into.nsec = nsec - carry * NS_PER_SEC;
  return into;
}

/**
 * A CLOCK_MONOTONIC nanosecond count held as two u32 halves (as the kernel's u64 is read), as
 * whole seconds and nanoseconds, exact for every u64. (As one number it would lose nanoseconds
 * above 2^53 ns, 104 days of uptime.) 2^32 ns is 4 s + 294967296 ns, but hi * 294967296 can pass
 * 2^53, so hi is taken in 16-bit halves: 2^48 ns is 281474 s + 976710656 ns.
 */
export function monotonicFromHalves(hi: number, lo: number, into: Timespec = { sec: 0, nsec: 0 }): Timespec {
  const top = hi >>> 16;
  const bottom = hi & 0xffff;
  const ns = top * 976_710_656 + bottom * 294_967_296 + lo; // < 8.5e13: exact
  let carry = Math.floor(ns / NS_PER_SEC);
  let nsec = ns - carry * NS_PER_SEC;
  if (nsec < 0) {
    nsec += NS_PER_SEC;
    carry -= 1;
  } else if (nsec >= NS_PER_SEC) {
    nsec -= NS_PER_SEC;
    carry += 1;
  }
  into.sec = top * 281_474 + bottom * 4 + carry;
  into.nsec = nsec;
  return into;
}

/** Nanoseconds from `from` to `to`: exact while below 2^53 (104 days). */
export function nsBetween(from: Timespec, to: Timespec): number {
  return (to.sec - from.sec) * NS_PER_SEC + (to.nsec - from.nsec);
}

/** A CLOCK_MONOTONIC time as one nanosecond number (rounded above 2^53 ns): for ordering and timers. */
export function toNs(t: Timespec): number {
  return t.sec * NS_PER_SEC + t.nsec;
}

/**
 * A Clock from a known offset (pure: no FFI). `measureOffset`, when given, is what recalibrate()
 * calls; without it recalibrate() keeps the offset.
 */
export function makeClock(
  offsetSec: number,
  offsetNsec: number,
  nowMonotonicNs: () => number,
  measureOffset?: () => Timespec,
): Clock {
  let sec = offsetSec;
  let nsec = offsetNsec;
  return {
    toWall: (monotonic) => monotonicToWall(sec, nsec, monotonic),
    toWallInto: (monotonic, into) => monotonicToWall(sec, nsec, monotonic, into),
    nowMonotonicNs,
    recalibrate() {
      if (measureOffset === undefined) return;
      const offset = measureOffset();
      sec = offset.sec;
      nsec = offset.nsec;
    },
  };
}

/** The system clock: libc clock_gettime through bun:ffi, calibrated now. */
export function createClock(): Clock {
  const clockGettime = libc.clock_gettime;

  // struct timespec { i64 tv_sec; i64 tv_nsec; }, read as u32 halves to stay off BigInt.
  const buffer = new Uint32Array(4);
  const view = new DataView(buffer.buffer);
  const lo = HOST_LE ? 0 : 4;
  const hi = HOST_LE ? 4 : 0;

  function read(clockId: number): void {
    if (clockGettime(clockId, buffer) !== 0) {
      throw new Error(`clock_gettime(${clockId === CLOCK_MONOTONIC ? "CLOCK_MONOTONIC" : "CLOCK_REALTIME"}) failed`);
    }
  }
  function seconds(): number {
    return view.getInt32(hi, HOST_LE) * 4294967296 + view.getUint32(lo, HOST_LE);
  }
  function nanoseconds(): number {
    return view.getUint32(8 + lo, HOST_LE); // always 0..999999999
  }

  function nowMonotonicNs(): number {
    read(CLOCK_MONOTONIC);
    return seconds() * NS_PER_SEC + nanoseconds();
  }

  function measureOffset(): Timespec {
    const samples: CalibrationSample[] = [];
    for (let i = 0; i < CALIBRATION_SAMPLES; i++) {
      // Only primitives between the three reads, to keep the bracket tight.
      read(CLOCK_MONOTONIC);
      const m1s = seconds();
      const m1n = nanoseconds();
      read(CLOCK_REALTIME);
      const rs = seconds();
      const rn = nanoseconds();
      read(CLOCK_MONOTONIC);
      const m2s = seconds();
      const m2n = nanoseconds();
      samples.push({
        monoBefore: { sec: m1s, nsec: m1n },
        real: { sec: rs, nsec: rn },
        monoAfter: { sec: m2s, nsec: m2n },
      });
    }
    return offsetFromSamples(samples);
  }

  const offset = measureOffset();
  return makeClock(offset.sec, offset.nsec, nowMonotonicNs, measureOffset);
}
