// The fixes `check` gives for capabilities and a refused bpf(), written out once for the unit and
// the end-to-end tests (the source has them in src/check/system.ts).
export const GRANT =
  "run as root, or grant CAP_BPF and CAP_PERFMON (systemd: AmbientCapabilities=CAP_BPF CAP_PERFMON; " +
  "Kubernetes: securityContext.capabilities.add: [BPF, PERFMON])";
export const ALLOW_BPF =
  "allow bpf() in the seccomp profile (Kubernetes: seccompProfile RuntimeDefault of a runtime that knows CAP_BPF, or a " +
  "Localhost profile allowing bpf; systemd: add bpf to SystemCallFilter=) and in the security module's policy (AppArmor, SELinux)";
