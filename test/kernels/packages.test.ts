import { describe, expect, test } from "bun:test";
import { type Candidate, compareVersions, imageRelease, MATRIX, parseMadison, pick, specById } from "../../scripts/kernels/matrix.ts";

describe("compareVersions: Debian's order", () => {
  const ordered = [
    "0.9",
    "1.0~rc1",
    "1.0",
    "1.0-0.1",
    "1.0-1~bpo12+1",
    "1.0-1",
    "1.0-1+b1",
    "1.0-2",
    "1.0a",
    "1.0+dfsg",
    "1.1",
    "1.10",
    "5.10.251-5",
    "5.10.262-1",
    "6.1.192-2",
    "6.1.192-3",
    "6.12.95-1~bpo12+1",
    "6.12.117-1~deb12u1",
    "6.12.117-1",
    "7.2.13-1",
    "1:0.1",
  ];
  test("each version is newer than the one before it", () => {
    for (let i = 1; i < ordered.length; i++) {
      expect({ a: ordered[i - 1], b: ordered[i], order: Math.sign(compareVersions(ordered[i - 1]!, ordered[i]!)) }).toEqual({
        a: ordered[i - 1],
        b: ordered[i],
        order: -1,
      });
      expect(Math.sign(compareVersions(ordered[i]!, ordered[i - 1]!))).toBe(1);
    }
  });
  test("equal versions, however written", () => {
    for (const [a, b] of [["1.0", "1.0"], ["1.01", "1.1"], ["0:1.0", "1.0"], ["1.0", "1.0-"], ["6.1.0-57", "6.1.0-057"]]) {
      expect({ a, b, order: compareVersions(a!, b!) }).toEqual({ a, b, order: 0 });
    }
  });
  test("~ sorts before the end of a version, letters before other characters", () => {
    expect(compareVersions("1.0~~", "1.0~")).toBeLessThan(0);
    expect(compareVersions("1.0~", "1.0")).toBeLessThan(0);
    expect(compareVersions("1.0a", "1.0.")).toBeLessThan(0);
    expect(compareVersions("1.0Z", "1.0a")).toBeLessThan(0);
  });
  test("numbers compare as numbers, however long", () => {
    expect(compareVersions("6.12.100", "6.12.99")).toBeGreaterThan(0);
    expect(compareVersions("1.123456789012345678901", "1.123456789012345678900")).toBeGreaterThan(0);
  });
});

describe("imageRelease: the generic amd64 image packages only", () => {
  test("the kernel release of real package names", () => {
    expect(imageRelease("linux-image-5.10.0-46-amd64")).toBe("5.10.0-46");
    expect(imageRelease("linux-image-6.1.0-57-amd64")).toBe("6.1.0-57");
    expect(imageRelease("linux-image-6.1.0-0.deb11.52-amd64")).toBe("6.1.0-0.deb11.52");
    expect(imageRelease("linux-image-6.12.117+deb12-amd64")).toBe("6.12.117+deb12");
    expect(imageRelease("linux-image-7.2.13+deb14-amd64")).toBe("7.2.13+deb14");
  });
  test("not meta packages, other flavours, unsigned or debug packages", () => {
    for (const name of [
      "linux-image-amd64",
      "linux-image-6.1-amd64",
      "linux-image-6.1.0-57-cloud-amd64",
      "linux-image-7.2.13+deb14-rt-amd64",
      "linux-image-7.2.13+deb14-cloud-amd64",
      "linux-image-6.1.0-57-amd64-unsigned",
      "linux-image-6.1.0-57-amd64-dbg",
      "linux-image-6.1.0-57-arm64",
      "linux-headers-6.1.0-57-amd64",
    ]) {
      expect({ name, release: imageRelease(name) }).toEqual({ name, release: null });
    }
  });
});

// A slice of what the archive listed on 2026-12-01.
const MADISON = `linux-image-5.10.0-45-amd64 | 5.10.259-1 | http://deb.debian.org/debian-security bullseye-security/main amd64 Packages
linux-image-5.10.0-46-amd64 | 5.10.262-1 | http://deb.debian.org/debian-security bullseye-security/main amd64 Packages
linux-image-5.10.0-32-amd64 | 5.10.223-1 | http://deb.debian.org/debian bullseye/main amd64 Packages
linux-image-6.1.0-0.deb11.52-amd64 | 6.1.176-1~deb11u1 | http://deb.debian.org/debian-security bullseye-security/main amd64 Packages
linux-image-6.1.0-50-amd64 |  6.1.176-1 | http://deb.debian.org/debian bookworm/main amd64 Packages
linux-image-6.1.0-50-amd64 |  6.1.176-1 | http://deb.debian.org/debian-security bookworm-security/main amd64 Packages
linux-image-6.1.0-57-amd64 |  6.1.192-3 | http://deb.debian.org/debian-security bookworm-security/main amd64 Packages
linux-image-6.1.0-57-cloud-amd64 |  6.1.192-3 | http://deb.debian.org/debian-security bookworm-security/main amd64 Packages
linux-image-6.12.95+deb12-amd64 | 6.12.95-1~bpo12+1 | http://deb.debian.org/debian bookworm-backports/main amd64 Packages
linux-image-6.12.117+deb12-amd64 | 6.12.117-1~deb12u1 | http://deb.debian.org/debian-security bookworm-security/main amd64 Packages
linux-image-7.2.13+deb14-amd64 |   7.2.13-1 | http://deb.debian.org/debian sid/main amd64 Packages
linux-image-7.2.13+deb14-rt-amd64 |   7.2.13-1 | http://deb.debian.org/debian sid/main amd64 Packages
linux-image-amd64 |   7.2.13-1 | http://deb.debian.org/debian sid/main amd64 Packages
   linux | 7.2.13-1 | http://deb.debian.org/debian sid/main Sources
`;

describe("pick: the package each kernel of the matrix stands for", () => {
  const candidates = parseMadison(MADISON);
  const chosen = (id: string) => {
    const c = pick(specById(id), candidates);
    return c && `${c.name} ${c.version} ${c.suite}`;
  };

  test("parseMadison reads name, version and suite, and skips source lines", () => {
    expect(candidates).toHaveLength(13);
    expect(candidates[6]).toEqual({ name: "linux-image-6.1.0-57-amd64", version: "6.1.192-3", suite: "bookworm-security" });
  });
  test("5.10: Debian 11's newest, from bullseye-security", () => {
    expect(chosen("5.10")).toBe("linux-image-5.10.0-46-amd64 5.10.262-1 bullseye-security");
  });
  test("6.1: Debian 12's own 6.1, not the one built for Debian 11", () => {
    expect(chosen("6.1")).toBe("linux-image-6.1.0-57-amd64 6.1.192-3 bookworm-security");
  });
  test("6.12: the newest of Debian 12's suites (security before backports here)", () => {
    expect(chosen("6.12")).toBe("linux-image-6.12.117+deb12-amd64 6.12.117-1~deb12u1 bookworm-security");
  });
  test("newest: the highest version of any suite, generic flavour, never the meta package", () => {
    expect(chosen("newest")).toBe("linux-image-7.2.13+deb14-amd64 7.2.13-1 sid");
    const withoutSid = candidates.filter((c) => c.suite !== "sid");
    expect(pick(specById("newest"), withoutSid)?.name).toBe("linux-image-6.12.117+deb12-amd64");
  });
  test("a kernel the lists do not have: null, not a neighbour's package", () => {
    expect(pick(specById("5.10"), candidates.filter((c) => !c.name.startsWith("linux-image-5.10")))).toBeNull();
  });
  test("the matrix: four kernels, each named once; an unknown one is refused", () => {
    expect(MATRIX.map((s) => s.id)).toEqual(["5.10", "6.1", "6.12", "newest"]);
    expect(() => specById("4.19")).toThrow('unknown kernel "4.19": one of 5.10, 6.1, 6.12, newest');
  });
});
