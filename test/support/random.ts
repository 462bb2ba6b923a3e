// Seeded pseudo-random numbers (xorshift32) for tests and benchmarks: the same values on every run.

/** A generator from `seed`: next() in [0, 1), int(n) in 0..n-1, pick(items), chance(p). */
export function seededRandom(seed: number) {
  let x = seed >>> 0 || 1;
  const next = () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x / 2 ** 32;
  };
  const int = (n: number) => Math.floor(next() * n);
  const pick = <T>(items: readonly T[]): T => items[int(items.length)]!;
  return { next, int, pick, chance: (p: number) => next() < p };
}

export type Random = ReturnType<typeof seededRandom>;
