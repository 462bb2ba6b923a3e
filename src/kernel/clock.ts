// Kernel timestamps (bpf_ktime_get_ns) are CLOCK_MONOTONIC nanoseconds; the log prints wall-clock
// time to the nanosecond digit. The offset between the two clocks is measured once at start-up
// (and again on recalibrate(), e.g. after the wall clock was stepped) by reading CLOCK_MONOTONIC,
// CLOCK_REALTIME, CLOCK_MONOTONIC back to back and keeping the tightest bracket: the error is at
// most half that bracket, typically well under a microsecond. Second-rounded uptime (/proc/uptime,
// Go's boot-time tricks) would be off by up to a second.
//
// Wall time stays as integer seconds plus integer nanoseconds all the way: a single float of
// ~1.7e18 ns would round to 256 ns steps.

import { dlopen } from "bun:ffi";

/** Seconds since the Unix epoch and integer nanoseconds 0..999999999. */
export type WallTime = { sec: number; nsec: number };

/** A reading of one clock: seconds and nanoseconds 0..999999999, as in struct timespec. */
export type Timespec = { sec: number; nsec: number };

export interface Clock {
  /** Wall-clock time of a kernel CLOCK_MONOTONIC timestamp. */
  toWall(monotonicNs: number): WallTime;
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

/**
 * The wall time of `monotonicNs` given the REALTIME - MONOTONIC offset. Exact for any integer
 * input below 2^53 ns; a non-integer input is rounded to the nanosecond.
 */
export function monotonicToWall(offsetSec: number, offsetNsec: number, monotonicNs: number): WallTime {
  const ns = Math.round(monotonicNs);
  let monoSec = Math.floor(ns / NS_PER_SEC);
  let monoNsec = ns - monoSec * NS_PER_SEC;
  // ns / 1e9 can round up to the next integer just below a whole second: correct the split.
  if (monoNsec < 0) {
    monoNsec += NS_PER_SEC;
    monoSec -= 1;
  } else if (monoNsec >= NS_PER_SEC) {
    monoNsec -= NS_PER_SEC;
    monoSec += 1;
  }
  let sec = offsetSec + monoSec;
  let nsec = offsetNsec + monoNsec;
  if (nsec >= NS_PER_SEC) {
    nsec -= NS_PER_SEC;
    sec += 1;
  }
  return { sec, nsec };
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
    toWall: (monotonicNs) => monotonicToWall(sec, nsec, monotonicNs),
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
  const libc = dlopen("libc.so.6", {
    clock_gettime: { args: ["i32", "ptr"], returns: "i32" },
  });
  const clockGettime = libc.symbols.clock_gettime;

  // struct timespec { i64 tv_sec; i64 tv_nsec; }, read as u32 halves to stay off BigInt.
  const buffer = new Uint32Array(4);
  const view = new DataView(buffer.buffer);
  const le = new Uint8Array(Uint16Array.of(1).buffer)[0] === 1;
  const lo = le ? 0 : 4;
  const hi = le ? 4 : 0;

  function read(clockId: number): void {
    if (clockGettime(clockId, buffer) !== 0) {
      throw new Error(`clock_gettime(${clockId === CLOCK_MONOTONIC ? "CLOCK_MONOTONIC" : "CLOCK_REALTIME"}) failed`);
    }
  }
  function seconds(): number {
    return view.getInt32(hi, le) * 4294967296 + view.getUint32(lo, le);
  }
  function nanoseconds(): number {
    return view.getUint32(8 + lo, le); // always 0..999999999
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
