// scripts/deploy/*.yaml and the Containerfile: every document parses; every key is one the
// Kubernetes API knows (strict schemas of the parts we use, so a misspelt field fails here instead
// of being dropped by the API server); and the fields the agent depends on hold: the image, args
// the agent's own command line accepts, NODE_IP from status.hostIP, the capabilities, the service
// account bound to a role with `get` on nodes/pods and nodes/proxy, `list` and `watch` on what
// the API-server source reads, and nothing more; the mounts.
// Then the binary runs under the DaemonSet's securityContext, made for real from the YAML: its
// capabilities as root's only ones, no_new_privs, a read-only root, the emptyDir lock directory,
// and a PID and network namespace of its own (hostPID and hostNetwork false).
//
// `kubectl apply --dry-run=client` is not run: even client-side, kubectl asks an API server for
// its discovery document and OpenAPI schema, and there is none here (offline, no cluster).
import { describe, expect, test } from "bun:test";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import * as v from "valibot";
import { parseAllDocuments } from "yaml";
import packageJson from "../package.json" with { type: "json" };
import { DEFAULT_LOCK_FILE } from "../src/options.ts";
import { parseCommandLine } from "../src/cli.ts";
import { RESOURCES } from "../src/kube/apiserver/source.ts";
import { AGENT_BINARY } from "./e2e/agent.ts";
import { standInsCheckLine } from "./e2e/check-support.ts";
import { hasCommand, IS_ROOT, testIf } from "./support/require.ts";

const DEPLOY = new URL("../scripts/deploy/", import.meta.url).pathname;
const YAML_FILES = readdirSync(DEPLOY)
  .filter((name) => name.endsWith(".yaml"))
  .sort();

// ── Strict schemas: the Kubernetes fields these files use, by their API names ──────────────

const Labels = v.record(v.string(), v.string());
const Metadata = v.strictObject({ name: v.string(), namespace: v.optional(v.string()), labels: v.optional(Labels) });
const Namespace = v.strictObject({ apiVersion: v.literal("v1"), kind: v.literal("Namespace"), metadata: Metadata });
const ServiceAccount = v.strictObject({ apiVersion: v.literal("v1"), kind: v.literal("ServiceAccount"), metadata: Metadata });
const PolicyRule = v.strictObject({ apiGroups: v.array(v.string()), resources: v.array(v.string()), verbs: v.array(v.string()) });
const ClusterRole = v.strictObject({
  apiVersion: v.literal("rbac.authorization.k8s.io/v1"),
  kind: v.literal("ClusterRole"),
  metadata: Metadata,
  rules: v.array(PolicyRule),
});
const ClusterRoleBinding = v.strictObject({
  apiVersion: v.literal("rbac.authorization.k8s.io/v1"),
  kind: v.literal("ClusterRoleBinding"),
  metadata: Metadata,
  roleRef: v.strictObject({ apiGroup: v.literal("rbac.authorization.k8s.io"), kind: v.literal("ClusterRole"), name: v.string() }),
  subjects: v.array(v.strictObject({ kind: v.literal("ServiceAccount"), name: v.string(), namespace: v.string() })),
});
const Quantity = v.union([v.string(), v.number()]);
const Resources = v.strictObject({ requests: v.optional(v.record(v.string(), Quantity)), limits: v.optional(v.record(v.string(), Quantity)) });
const EnvVar = v.strictObject({
  name: v.string(),
  value: v.optional(v.string()),
  valueFrom: v.optional(v.strictObject({ fieldRef: v.strictObject({ fieldPath: v.string(), apiVersion: v.optional(v.string()) }) })),
});
const SecurityContext = v.strictObject({
  privileged: v.optional(v.boolean()),
  runAsUser: v.optional(v.number()),
  runAsGroup: v.optional(v.number()),
  runAsNonRoot: v.optional(v.boolean()),
  allowPrivilegeEscalation: v.optional(v.boolean()),
  readOnlyRootFilesystem: v.optional(v.boolean()),
  capabilities: v.optional(v.strictObject({ drop: v.optional(v.array(v.string())), add: v.optional(v.array(v.string())) })),
  seccompProfile: v.optional(v.strictObject({ type: v.picklist(["RuntimeDefault", "Unconfined", "Localhost"]), localhostProfile: v.optional(v.string()) })),
});
const Container = v.strictObject({
  name: v.string(),
  image: v.string(),
  imagePullPolicy: v.optional(v.picklist(["Always", "IfNotPresent", "Never"])),
  command: v.optional(v.array(v.string())),
  args: v.optional(v.array(v.string())),
  env: v.optional(v.array(EnvVar)),
  securityContext: v.optional(SecurityContext),
  resources: v.optional(Resources),
  volumeMounts: v.optional(v.array(v.strictObject({ name: v.string(), mountPath: v.string(), readOnly: v.optional(v.boolean()) }))),
});
const Volume = v.strictObject({
  name: v.string(),
  hostPath: v.optional(v.strictObject({ path: v.string(), type: v.optional(v.string()) })),
  emptyDir: v.optional(v.strictObject({ medium: v.optional(v.string()), sizeLimit: v.optional(Quantity) })),
});
const DaemonSet = v.strictObject({
  apiVersion: v.literal("apps/v1"),
  kind: v.literal("DaemonSet"),
  metadata: Metadata,
  spec: v.strictObject({
    selector: v.strictObject({ matchLabels: Labels }),
    updateStrategy: v.optional(
      v.strictObject({
        type: v.picklist(["RollingUpdate", "OnDelete"]),
        rollingUpdate: v.optional(v.strictObject({ maxUnavailable: v.optional(Quantity), maxSurge: v.optional(Quantity) })),
      }),
    ),
    template: v.strictObject({
      metadata: v.strictObject({ labels: Labels }),
      spec: v.strictObject({
        serviceAccountName: v.string(),
        priorityClassName: v.optional(v.string()),
        automountServiceAccountToken: v.optional(v.boolean()),
        hostNetwork: v.optional(v.boolean()),
        hostPID: v.optional(v.boolean()),
        hostIPC: v.optional(v.boolean()),
        tolerations: v.optional(
          v.array(v.strictObject({ key: v.optional(v.string()), operator: v.optional(v.picklist(["Exists", "Equal"])), effect: v.optional(v.string()) })),
        ),
        terminationGracePeriodSeconds: v.optional(v.number()),
        containers: v.array(Container),
        volumes: v.optional(v.array(Volume)),
      }),
    }),
  }),
});
const ResourceQuota = v.strictObject({
  apiVersion: v.literal("v1"),
  kind: v.literal("ResourceQuota"),
  metadata: Metadata,
  spec: v.strictObject({
    hard: v.record(v.string(), Quantity),
    scopeSelector: v.strictObject({
      matchExpressions: v.array(v.strictObject({ scopeName: v.string(), operator: v.picklist(["In", "NotIn", "Exists", "DoesNotExist"]), values: v.array(v.string()) })),
    }),
  }),
});
const KINDS = { Namespace, ResourceQuota, ServiceAccount, ClusterRole, ClusterRoleBinding, DaemonSet } as const;
type Kind = keyof typeof KINDS;

interface Loaded {
  file: string;
  kind: Kind;
  object: unknown;
}

function load(dir = DEPLOY, files = YAML_FILES): Loaded[] {
  return files.flatMap((file) =>
    parseAllDocuments(readFileSync(join(dir, file), "utf8")).map((doc) => {
      if (doc.errors.length > 0 || doc.warnings.length > 0) throw new Error(`${file}: ${[...doc.errors, ...doc.warnings].map((e) => e.message).join("; ")}`);
      const object = doc.toJS() as { kind?: unknown };
      if (typeof object?.kind !== "string" || !(object.kind in KINDS)) throw new Error(`${file}: unexpected kind ${String(object?.kind)}`);
      return { file, kind: object.kind as Kind, object };
    }),
  );
}

const loaded = load();
function only<K extends Kind>(kind: K): v.InferOutput<(typeof KINDS)[K]> {
  const found = loaded.filter((item) => item.kind === kind);
  expect(found).toHaveLength(1);
  return v.parse(KINDS[kind], found[0]!.object) as v.InferOutput<(typeof KINDS)[K]>;
}

describe("Kubernetes objects", () => {
  test("every document parses and uses only fields the API knows", () => {
    expect(YAML_FILES).toEqual(["00-namespace.yaml", "10-rbac.yaml", "20-daemonset.yaml"]);
    expect(loaded.map((item) => `${item.file}: ${item.kind}`)).toEqual([
      "00-namespace.yaml: Namespace",
      "00-namespace.yaml: ResourceQuota",
      "10-rbac.yaml: ServiceAccount",
      "10-rbac.yaml: ClusterRole",
      "10-rbac.yaml: ClusterRoleBinding",
      "20-daemonset.yaml: DaemonSet",
    ]);
    for (const item of loaded) {
      const result = v.safeParse(KINDS[item.kind], item.object);
      expect(result.success ? "ok" : `${item.file} ${item.kind}: ${v.summarize(result.issues)}`).toBe("ok");
    }
  });

  test("everything lives in the namespace of its own that 00-namespace.yaml creates first", () => {
    const ns = only("Namespace").metadata.name;
    expect(ns).toBe("kmesh-accesslog");
    expect(only("ServiceAccount").metadata.namespace).toBe(ns);
    expect(only("DaemonSet").metadata.namespace).toBe(ns);
    expect(only("ResourceQuota").metadata.namespace).toBe(ns);
  });

  test("the DaemonSet's pods are node-critical, and the namespace's quota admits that class where a cluster asks for one", () => {
    const priorityClass = only("DaemonSet").spec.template.spec.priorityClassName;
    expect(priorityClass).toBe("system-node-critical");
    expect(only("ResourceQuota").spec).toEqual({
      hard: { pods: "10000" },
      scopeSelector: { matchExpressions: [{ scopeName: "PriorityClass", operator: "In", values: [priorityClass!] }] },
    });
  });

  test("RBAC: the DaemonSet's service account is bound to get on nodes/pods and nodes/proxy, list and watch on what the API-server source reads, nothing else", () => {
    const sa = only("ServiceAccount");
    const role = only("ClusterRole");
    const binding = only("ClusterRoleBinding");
    const pod = only("DaemonSet").spec.template.spec;
    expect(pod.serviceAccountName).toBe(sa.metadata.name);
    expect(pod.automountServiceAccountToken).toBe(true);
    expect(binding.roleRef.name).toBe(role.metadata.name);
    expect(binding.subjects).toEqual([{ kind: "ServiceAccount", name: sa.metadata.name, namespace: sa.metadata.namespace! }]);
    expect(role.rules).toEqual([
      { apiGroups: [""], resources: ["nodes/pods", "nodes/proxy"], verbs: ["get"] },
      { apiGroups: [""], resources: ["pods", "services"], verbs: ["list", "watch"] },
      { apiGroups: ["discovery.k8s.io"], resources: ["endpointslices"], verbs: ["list", "watch"] },
    ]);
    // ... which are what the API-server source reads, each by its path.
    const granted = new Set(role.rules.flatMap((rule) => rule.resources.map((r) => `${rule.apiGroups[0] === "" ? "" : `${rule.apiGroups[0]}/`}${r}`)));
    for (const { kind, path } of RESOURCES) {
      const group = path.startsWith("/apis/") ? `${path.split("/")[2]}/` : "";
      expect(granted.has(`${group}${kind}`)).toBe(true);
    }
  });

  test("the DaemonSet: image, args the agent accepts, NODE_IP from status.hostIP, NODE_NAME from spec.nodeName, every node", () => {
    const ds = only("DaemonSet");
    const pod = ds.spec.template.spec;
    expect(ds.spec.selector.matchLabels).toEqual(pickLabels(ds.spec.template.metadata.labels, ds.spec.selector.matchLabels));
    expect(pod.containers).toHaveLength(1);
    const agent = pod.containers[0]!;
    expect(agent.image).toBe(`kmesh-accesslog:${packageJson.version}`);
    expect(agent.command).toBeUndefined(); // the image's ENTRYPOINT is the binary
    const invocation = parseCommandLine(agent.args ?? []);
    if (invocation.command !== "run") throw new Error(`args start ${invocation.command}, not run`);
    expect(invocation.options.adminAddr).toEqual({ host: "127.0.0.1", port: 15200 });
    expect(invocation.options.noKubelet).toBeUndefined();
    expect(agent.env).toEqual([
      { name: "NODE_IP", valueFrom: { fieldRef: { fieldPath: "status.hostIP" } } },
      { name: "NODE_NAME", valueFrom: { fieldRef: { fieldPath: "spec.nodeName" } } },
    ]);
    expect(pod.tolerations).toEqual([{ operator: "Exists" }]);
    expect(pod.hostNetwork).toBe(false);
    expect(pod.hostPID).toBe(false);
    expect(ds.spec.updateStrategy?.rollingUpdate?.maxSurge).toBeUndefined();
    // README, "A burst of closes": the weight that lost no record in a burst
    expect(agent.resources?.requests).toEqual({ cpu: "1000m", memory: "160Mi" });
    expect(agent.resources?.limits).toEqual({ memory: "512Mi" });
  });

  test("least privileges: not privileged, every capability dropped but BPF, PERFMON and SYS_RESOURCE", () => {
    const security = only("DaemonSet").spec.template.spec.containers[0]!.securityContext!;
    expect(security).toEqual({
      privileged: false,
      runAsUser: 0,
      runAsGroup: 0,
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      capabilities: { drop: ["ALL"], add: ["BPF", "PERFMON", "SYS_RESOURCE"] },
      seccompProfile: { type: "RuntimeDefault" },
    });
  });

  test("mounts: the kernel's BTF, the node's cgroups and tracefs read-only, the lock directory writable, no bpffs", () => {
    const pod = only("DaemonSet").spec.template.spec;
    const mounts = pod.containers[0]!.volumeMounts!;
    expect(mounts).toEqual([
      { name: "btf", mountPath: "/sys/kernel/btf", readOnly: true },
      { name: "cgroup", mountPath: "/sys/fs/cgroup", readOnly: true },
      { name: "tracing", mountPath: "/sys/kernel/tracing", readOnly: true },
      { name: "run", mountPath: dirname(DEFAULT_LOCK_FILE) },
    ]);
    expect(pod.volumes).toEqual([
      { name: "btf", hostPath: { path: "/sys/kernel/btf", type: "Directory" } },
      { name: "cgroup", hostPath: { path: "/sys/fs/cgroup", type: "Directory" } },
      { name: "tracing", hostPath: { path: "/sys/kernel/tracing", type: "Directory" } },
      { name: "run", emptyDir: { medium: "Memory", sizeLimit: "1Mi" } },
    ]);
  });
});

describe("the kmeshctl variant (scripts/deploy/kmeshctl/)", () => {
  const dir = join(DEPLOY, "kmeshctl");
  const files = readdirSync(dir).filter((name) => name.endsWith(".yaml")).sort();
  const variant = load(dir, files);

  test("the same objects but for the namespace kmesh-system and the pods' label app=kmesh: where kmeshctl looks", () => {
    expect(files).toEqual(YAML_FILES);
    for (const item of variant) {
      const result = v.safeParse(KINDS[item.kind], item.object);
      expect(result.success ? "ok" : `kmeshctl/${item.file} ${item.kind}: ${v.summarize(result.issues)}`).toBe("ok");
    }
    // The main objects, moved: everything else must be equal, so that the two never drift apart.
    const moved = structuredClone(loaded.map((item) => item.object)) as Record<string, any>[];
    for (const object of moved) {
      if (object.kind === "Namespace") object.metadata.name = "kmesh-system";
      if (object.metadata.namespace !== undefined) object.metadata.namespace = "kmesh-system";
      for (const subject of object.subjects ?? []) subject.namespace = "kmesh-system";
      if (object.kind === "DaemonSet") object.spec.template.metadata.labels.app = "kmesh";
    }
    expect(variant.map((item) => item.object)).toEqual(moved);
  });

  test("kmeshctl's selection finds the pods, and its port-forward the admin API", () => {
    const ds = variant.find((item) => item.kind === "DaemonSet")!.object as v.InferOutput<typeof DaemonSet>;
    // kmeshctl: pods with label app=kmesh in kmesh-system, port 15200 (ctl/utils: KmeshNamespace, KmeshAdminPort)
    expect(ds.metadata.namespace).toBe("kmesh-system");
    expect(ds.spec.template.metadata.labels.app).toBe("kmesh");
    const invocation = parseCommandLine(ds.spec.template.spec.containers[0]!.args ?? []);
    if (invocation.command !== "run") throw new Error("not run");
    expect(invocation.options.adminAddr).toEqual({ host: "127.0.0.1", port: 15200 });
    // its own selector, unchanged: Kmesh's DaemonSet selects app=kmesh
    expect(ds.spec.selector.matchLabels).toEqual({ "app.kubernetes.io/name": "kmesh-accesslog" });
  });
});

describe("Containerfile", () => {
  const text = readFileSync(join(DEPLOY, "Containerfile"), "utf8");
  const instructions = text
    .split("\n")
    .filter((line) => line.trim() !== "" && !line.startsWith("#"))
    .map((line) => line.trim());

  test("copies the single binary onto distroless and makes it the entrypoint, as root", () => {
    expect(instructions).toEqual([
      "FROM gcr.io/distroless/base-nossl-debian12",
      "COPY kmesh-accesslog /usr/local/bin/kmesh-accesslog",
      "USER 0:0",
      'ENTRYPOINT ["/usr/local/bin/kmesh-accesslog"]',
      'CMD ["run"]',
    ]);
    // The build command it documents sends dist/ as the context, where scripts/build puts the binary.
    expect(text).toContain(`docker build -f scripts/deploy/Containerfile -t kmesh-accesslog:${packageJson.version} dist/`);
  });

  testIf(existsSync(AGENT_BINARY) && hasCommand("ldd"), "needs the compiled binary (scripts/build) and ldd")("the binary needs nothing from the image but glibc", () => {
    const ldd = Bun.spawnSync(["ldd", AGENT_BINARY]).stdout.toString();
    const libraries = [...ldd.matchAll(/^\s*(\S+)/gm)].map((m) => m[1]!.replace(/.*\//, "")).sort();
    for (const library of libraries) expect(library).toMatch(/^(linux-vdso\.so\.1|ld-linux-[\w-]+\.so\.\d|libc\.so\.6|libm\.so\.6|libpthread\.so\.0|libdl\.so\.2)$/);
  });
});

const emulate = testIf(
  IS_ROOT && existsSync(AGENT_BINARY) && ["unshare", "setpriv", "ip"].every(hasCommand),
  "needs root, the compiled binary (scripts/build), unshare, setpriv and ip",
);

describe("the DaemonSet's securityContext, made for real", () => {
  emulate("check passes with exactly its capabilities (the kubelet and API server, unreachable from the pod's empty network, are warnings)", async () => {
    const result = await inThePod(["check"], addedCapabilities());
    // With the API server, the conntrack hook is tried with these capabilities (a warning when it
    // cannot be: the agent runs without it): a kprobe where the kernel has them, which Debian's and
    // Ubuntu's perf_event_paranoid 3 keeps for CAP_SYS_ADMIN; without kprobes, fentry, which this
    // project's VM refuses; nothing while nf_conntrack is not loaded.
    const paranoid = Number(readFileSync("/proc/sys/kernel/perf_event_paranoid", "utf8"));
    const conntrack = !existsSync("/sys/module/nf_conntrack")
      ? /^- conntrack: nf_conntrack is not loaded /
      : !existsSync("/sys/bus/event_source/devices/kprobe")
        ? /^(✔ conntrack: a fentry on|⚠ conntrack: cannot hook the kernel's connection tracking \(this kernel has no kprobes; )/
        : paranoid > 2
          ? new RegExp(
              `^⚠ conntrack: cannot hook the kernel's connection tracking \\(attach a kprobe to __nf_conntrack_hash_insert: Permission denied: kernel\\.perf_event_paranoid is ${paranoid}, ` +
                "at which this kernel lets only CAP_SYS_ADMIN create a kprobe\\); .* — fix: nothing the agent needs; to name backends on other nodes: set kernel\\.perf_event_paranoid=2 on the node",
            )
          : /^✔ conntrack: a kprobe on __nf_conntrack_hash_insert loads and attaches;/;
    const conntrackLine = result.lines.find((line) => conntrack.test(line));
    const warnings = conntrackLine?.startsWith("⚠") ? 3 : 2;
    // The stand-ins' line is the node's (test/e2e/check.test.ts): what this kernel gives, whatever the pod.
    expect(result.lines).toContainEqual(standInsCheckLine());
    const standInsLine = result.lines.find((line) => line.startsWith("- stand-ins: "));
    expect(result.lines.filter((line) => !line.startsWith("✔ ") && line !== conntrackLine && line !== standInsLine)).toEqual([
      expect.stringMatching(/^⚠ kubelet: cannot reach https:\/\/10\.255\.0\.1:10250\/pods \(/),
      expect.stringMatching(/^⚠ API server: https:\/\/10\.96\.0\.1:443 \(in-cluster\): listing \w+ failed \(unreachable: /),
      `the agent can run on this node (${warnings} warnings, ⚠ above)`,
    ]);
    expect(conntrackLine).toBeDefined();
    expect(result.lines).toContain("✔ capabilities: root with CAP_BPF and CAP_PERFMON");
    expect(result.lines).toContainEqual(expect.stringMatching(/^✔ probe: the hooks load and attach/));
    expect(result.exitCode).toBe(0);
  }, 30_000);

  emulate("without PERFMON, or without BPF, it cannot run: each is needed", async () => {
    for (const missing of ["PERFMON", "BPF"]) {
      const result = await inThePod(["check", "--no-kubelet"], addedCapabilities().filter((cap) => cap !== missing));
      expect(result.lines).toContain(
        `✘ capabilities: missing CAP_${missing} (root, effective capabilities 0x${capMask(addedCapabilities().filter((cap) => cap !== missing)).toString(16)}) — fix: ` +
          "run as root, or grant CAP_BPF and CAP_PERFMON (systemd: AmbientCapabilities=CAP_BPF CAP_PERFMON; Kubernetes: securityContext.capabilities.add: [BPF, PERFMON])",
      );
      expect(result.exitCode).toBe(1);
    }
  }, 30_000);

  emulate("SYS_RESOURCE only matters before 5.11: without it this kernel runs the agent", async () => {
    const result = await inThePod(["check", "--no-kubelet"], addedCapabilities().filter((cap) => cap !== "SYS_RESOURCE"));
    const kernel = /^(\d+)\.(\d+)/.exec(readFileSync("/proc/sys/kernel/osrelease", "utf8"))!;
    const before511 = Number(kernel[1]) < 5 || (Number(kernel[1]) === 5 && Number(kernel[2]) < 11);
    expect(result.exitCode).toBe(before511 ? 1 : 0);
  }, 30_000);

  emulate("run, with the DaemonSet's args: it captures a connection made on the node outside the pod", async () => {
    const server = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response("ok") });
    try {
      const args = [...(only("DaemonSet").spec.template.spec.containers[0]!.args ?? []), "--duration", "3"];
      const running = inThePod(args, addedCapabilities());
      // The agent is up once it writes its first line; connect until one shows.
      let result: Awaited<typeof running> | undefined;
      const done = running.then((r) => (result = r));
      for (let i = 0; i < 50 && result === undefined; i++) {
        await fetch(`http://127.0.0.1:${server.port}/`, { headers: { connection: "close" } }).then((r) => r.text());
        await Promise.race([done, Bun.sleep(50)]);
      }
      await done;
      expect(result!.stderr).toContain("kmesh-accesslog: capturing TCP connections");
      expect(result!.exitCode).toBe(0);
      expect(result!.lines.some((line) => line.includes(`dst.addr=127.0.0.1:${server.port},`) && line.includes("direction=INBOUND"))).toBe(true);
    } finally {
      await server.stop(true);
    }
  }, 30_000);
});

/** The securityContext's added capabilities, by their Kubernetes names (BPF, PERFMON, ...). */
function addedCapabilities(): string[] {
  return only("DaemonSet").spec.template.spec.containers[0]!.securityContext!.capabilities!.add!;
}

const CAP_NUMBER: Record<string, number> = { SYS_RESOURCE: 24, PERFMON: 38, BPF: 39 };
/** The effective set root gets from a bounding set of `caps`: only those this machine's root holds. */
const capMask = (caps: string[]) => caps.reduce((mask, cap) => mask | (1n << BigInt(CAP_NUMBER[cap]!)), 0n) & hostBoundingSet();
const hostBoundingSet = () => BigInt(`0x${/^CapBnd:\s*([0-9a-f]+)$/m.exec(readFileSync("/proc/self/status", "utf8"))![1]}`);

/**
 * Runs the binary with `args` as the container would: root whose only capabilities are `caps`,
 * no_new_privs (allowPrivilegeEscalation: false), every mount read-only
 * (readOnlyRootFilesystem), a tmpfs at the lock directory (the emptyDir), its own PID namespace
 * (hostPID: false) and network namespace with only loopback (hostNetwork: false), NODE_IP and the
 * in-cluster variables set, a service-account token in place.
 */
async function inThePod(args: string[], caps: string[]): Promise<{ exitCode: number | null; lines: string[]; stderr: string }> {
  const pod = only("DaemonSet").spec.template.spec;
  const security = pod.containers[0]!.securityContext!;
  const lockDir = pod.containers[0]!.volumeMounts!.find((mount) => mount.name === "run")!.mountPath;
  const setup = [
    "set -e",
    "ip link set lo up",
    security.readOnlyRootFilesystem
      ? "awk '{print $2}' /proc/self/mounts | sort -u | while read -r m; do case \"$m\" in /proc*|/sys*|/dev*) ;; " +
        '*) mount -o remount,bind,ro "$m" 2>/dev/null || true ;; esac; done; if [ -w / ]; then exit 99; fi'
      : ":",
    // The emptyDir: a tmpfs over the lock directory of a tmpfs /run (the host's /run is untouched).
    `mount -t tmpfs tmpfs /run && mkdir -p ${lockDir} && mount -t tmpfs -o size=1m tmpfs ${lockDir}`,
    // automountServiceAccountToken: the token where every pod has it (/var/run is /run here).
    pod.automountServiceAccountToken
      ? "mkdir -p /run/secrets/kubernetes.io/serviceaccount && echo not-a-real-token > /run/secrets/kubernetes.io/serviceaccount/token"
      : ":",
    'exec "$@"',
  ].join("\n");
  const capList = caps.map((cap) => `+${cap.toLowerCase()}`).join(",");
  const argv = [
    ...["unshare", "--mount", "--propagation", "private", "--net", ...(pod.hostPID ? [] : ["--pid", "--fork", "--mount-proc"])],
    ...["sh", "-c", setup, "sh"],
    "setpriv",
    ...(security.allowPrivilegeEscalation === false ? ["--no-new-privs"] : []),
    "--inh-caps=-all",
    `--bounding-set=-all${capList === "" ? "" : `,${capList}`}`,
    AGENT_BINARY,
    ...args,
  ];
  // NODE_IP (the downward API) and the variables the kubelet gives every pod, as addresses nothing
  // answers on from the pod's empty network namespace.
  await using proc = Bun.spawn(argv, {
    env: { ...process.env, NODE_IP: "10.255.0.1", KUBERNETES_SERVICE_HOST: "10.96.0.1", KUBERNETES_SERVICE_PORT: "443" },
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
    timeout: 25_000,
    killSignal: "SIGKILL",
  });
  const [stdout, stderr, exitCode] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  return { exitCode, lines: stdout.split("\n").filter((line) => line !== ""), stderr };
}

function pickLabels(labels: Record<string, string>, wanted: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.keys(wanted).map((key) => [key, labels[key]!]));
}
