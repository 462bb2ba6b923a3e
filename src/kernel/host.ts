// What the probe needs of this host, as the kernel names it: its byte order, its release, its BTF, and the
// capabilities loading the probe takes (linux/capability.h), read from a process's status
// (/proc/<pid>/status). The probe diagnoses a failed load with these; `check` reports them.

/** Whether this host is little-endian: the kernel's structs and maps are in its byte order. */
export const HOST_LE = new Uint8Array(Uint16Array.of(1).buffer)[0] === 1;

/** The running kernel's BTF, which CO-RE relocations need. */
export const BTF_PATH = "/sys/kernel/btf/vmlinux";

export interface KernelVersion {
  major: number;
  minor: number;
}

/** `6.1.0-13-amd64` → 6.1; null when it does not start with a version. */
export function parseKernelRelease(release: string): KernelVersion | null {
  const match = /^(\d+)\.(\d+)/.exec(release);
  return match ? { major: Number(match[1]), minor: Number(match[2]) } : null;
}

export const atLeast = (v: KernelVersion, min: KernelVersion) => v.major > min.major || (v.major === min.major && v.minor >= min.minor);

export const CAP = { SYS_ADMIN: 21, SYS_RESOURCE: 24, PERFMON: 38, BPF: 39 } as const;

/** CapEff from a /proc/<pid>/status text, as a bit set; 0n when absent. */
export function effectiveCapabilities(status: string): bigint {
  const hex = /^CapEff:\s*([0-9a-fA-F]+)$/m.exec(status)?.[1];
  return hex === undefined ? 0n : BigInt(`0x${hex}`);
}

export const hasCapability = (caps: bigint, cap: number) => (caps & (1n << BigInt(cap))) !== 0n;

/** May load and attach the probe: CAP_BPF and CAP_PERFMON, or CAP_SYS_ADMIN (all a kernel before 5.8 knows). */
export const mayLoadBpf = (caps: bigint) =>
  (hasCapability(caps, CAP.BPF) && hasCapability(caps, CAP.PERFMON)) || hasCapability(caps, CAP.SYS_ADMIN);
