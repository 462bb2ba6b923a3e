// The command line's contract (src/cli.ts, from the flag table in src/options.ts): a mistake is
// one line on stderr and exit code 2; --help and --version exit 0; good values reach RunOptions
// (or check's options) checked and typed. Mistakes are tested through `bun src/main.ts`, the way a
// user meets them (the compiled binary is someone else's build); good values in-process, so no
// agent starts. By area: run's own flags, the runtime-control flags, the kubelet and filter
// flags, the API-server flags, check's, and the kmeshctl-style client commands.
import { describe, expect, test } from "bun:test";
import packageJson from "../../package.json" with { type: "json" };
import { parseCommandLine, type Invocation } from "../../src/cli.ts";
import { UsageError } from "../../src/errors.ts";
import { DEFAULT_MAX_BUFFERED_OUTPUT_BYTES } from "../../src/options.ts";
import { mayAskForHelp } from "../../src/load-cli.ts";
import { runCli, runCliWith, runOptions, usageError } from "../support/cli.ts";

describe("a mistake is one line on stderr and exit code 2", () => {
  const cases: [args: string[], message: string][] = [
    [["--output", "xml"], 'invalid value for --output: "xml" (expected text, json or none)'],
    [["run", "--output=xml"], 'invalid value for --output: "xml" (expected text, json or none)'],
    [["--output"], "missing value for --output (expected text, json or none)"],
    [["--duration", "0"], 'invalid value for --duration: "0" (expected a positive number of seconds, at most 2147483)'],
    [["--duration=-1"], 'invalid value for --duration: "-1" (expected a positive number of seconds, at most 2147483)'],
    [["--duration", "ten"], 'invalid value for --duration: "ten" (expected a positive number of seconds, at most 2147483)'],
    [["--duration", "9999999"], 'invalid value for --duration: "9999999" (expected a positive number of seconds, at most 2147483)'],
    [["--ring-buffer-size", "5000"], 'invalid value for --ring-buffer-size: "5000" (expected a power of two from 4K to 1G bytes, e.g. 8M)'],
    [["--ring-buffer-size", "2048"], 'invalid value for --ring-buffer-size: "2048" (expected a power of two from 4K to 1G bytes, e.g. 8M)'],
    [["--ring-buffer-size", "2G"], 'invalid value for --ring-buffer-size: "2G" (expected a power of two from 4K to 1G bytes, e.g. 8M)'],
    [["--ring-buffer-size", "8X"], 'invalid value for --ring-buffer-size: "8X" (expected a power of two from 4K to 1G bytes, e.g. 8M)'],
    [["--max-connections", "0"], 'invalid value for --max-connections: "0" (expected a whole number from 1 to 16777216)'],
    [["--max-connections", "1.5"], 'invalid value for --max-connections: "1.5" (expected a whole number from 1 to 16777216)'],
    [["--outptu", "json"], "unknown flag --outptu (did you mean --output?)"],
    [["run", "--max-conections", "5"], "unknown flag --max-conections (did you mean --max-connections?)"],
    [["--bogus"], "unknown flag --bogus"],
    [["-x"], "unknown flag -x"],
    [["foo"], 'unknown command "foo" (expected run, accesslog, monitoring, status, filter, check or feed)'],
    [["--feed", "http://feed:15300"], 'invalid value for --feed: "http://feed:15300" (expected an https:// URL, e.g. https://kmesh-accesslog-feed.kmesh-accesslog.svc:15300)'],
    [["feed"], "feed: --tls-cert-file is required (the feed serves agents over TLS only)"],
    [["feed", "--tls-cert-file", "c.pem"], "feed: --tls-key-file is required (the feed serves agents over TLS only)"],
    [["feed", "--tls-cert-file", "c.pem", "--tls-key-file", "k.pem", "--allow-service-account", "default/agent"], 'invalid value for --allow-service-account: "default/agent" (expected <namespace>:<service account>, e.g. kmesh-accesslog:kmesh-accesslog)'],
    [["feed", "--tls-cert-file", "c.pem", "--tls-key-file", "k.pem", "--output", "json"], "unknown flag --output"],
    [["run", "extra"], 'unexpected argument "extra"'],
    [["--output", "json", "run"], 'the command "run" must come before any flag'],
    // Several mistakes: the first one in argv order, still one line.
    [["--bogus", "--output", "xml", "--nope"], "unknown flag --bogus"],
    [["--output", "xml", "--bogus"], 'invalid value for --output: "xml" (expected text, json or none)'],
    // A value cannot break the one-line promise.
    [["--output", "a\nb"], 'invalid value for --output: "a\\nb" (expected text, json or none)'],
  ];

  test.concurrent.each(cases)("%j", async (args, message) => {
    const { stdout, stderr, exitCode } = await runCli(...args);
    expect({ exitCode, stderr, stdout }).toEqual({ exitCode: 2, stderr: `kmesh-accesslog: ${message}\n`, stdout: "" });
  });
});

describe("--help and --version", () => {
  const runFlags = ["--output <text|json|none>", "--duration <seconds>", "--ring-buffer-size <bytes>", "--max-connections <n>", "--version", "--help"];

  test.concurrent.each([[["--help"]], [["-h"]], [["run", "--help"]]])("%j lists run's flags and exits 0", async (args) => {
    const { stdout, stderr, exitCode } = await runCli(...args);
    expect({ exitCode, stderr }).toEqual({ exitCode: 0, stderr: "" });
    for (const flag of runFlags) expect(stdout).toContain(flag);
    expect(stdout).toContain(`v${packageJson.version}`);
  });

  // cleye is loaded with FORCE_COLOR=1 when the command line cannot ask for help (src/load-cli.ts):
  // help itself must still be coloured only on a terminal.
  const HELP = [["--help"], ["-h"], ["--help=true"], ["run", "--help"], ["status", "-h"], ["--duration", "5", "-h"]];
  test.concurrent.each(HELP.map((args) => [args]))("%j on a pipe, no colour asked for or refused: help without escapes", async (args) => {
    // ansis colours whatever the terminal when CI or COLORTERM is set (CI runs with CI=true).
    const { FORCE_COLOR: _force, NO_COLOR: _no, CI: _ci, COLORTERM: _colorterm, ...env } = process.env;
    const { stdout, exitCode } = await runCliWith(env, args);
    expect({ exitCode, usage: stdout.includes("USAGE:"), escapes: stdout.includes("\x1b[") }).toEqual({ exitCode: 0, usage: true, escapes: false });
  });

  test("what can ask for help, and what a run is given, are told apart", () => {
    expect(HELP.filter((args) => !mayAskForHelp(args))).toEqual([]);
    const runs = [[], ["run", "--output", "json", "--duration", "60"], ["--connection-metrics", "--report-interval", "10", "--admin-addr", "[::1]:15200"], ["--kubelet-host", "node-1"]];
    expect(runs.filter(mayAskForHelp)).toEqual([]);
  });

  test.concurrent("the top-level help names the run command", async () => {
    const { stdout } = await runCli("--help");
    expect(stdout).toMatch(/^\s+run\s+/m);
  });

  test.concurrent.each([[["--version"]], [["run", "--version"]]])("%j prints the package version", async (args) => {
    const { stdout, stderr, exitCode } = await runCli(...args);
    expect({ exitCode, stderr, stdout }).toEqual({ exitCode: 0, stderr: "", stdout: `${packageJson.version}\n` });
  });
});

/** The defaults of the runtime-control flags (and the cluster domain). */
const RUNTIME_CONTROL_DEFAULTS = {
  monitoring: true,
  accesslog: undefined,
  connectionMetrics: undefined,
  reportInterval: 5,
  adminAddr: { host: "127.0.0.1", port: 15200 },
  lockFile: "/run/kmesh-accesslog/agent.lock",
  logLevel: "info",
  clusterDomain: "cluster.local",
  workloadMetrics: undefined,
  metricsAddr: { host: "::", port: 15020 },
  metricsPrefix: "kmesh",
  metricsGrace: 300,
  clusterName: "Kubernetes",
  trustDomain: "cluster.local",
} as const;

describe("good values become RunOptions", () => {
  const control = RUNTIME_CONTROL_DEFAULTS;

  test("defaults", () => {
    expect(parseCommandLine([])).toEqual<Invocation>({
      command: "run",
      options: { output: "text", duration: undefined, ringBufferSize: 8 * 1024 * 1024, maxConnections: 262_144, connectionState: "socket-table", ...control },
    });
    expect(parseCommandLine(["run"])).toEqual(parseCommandLine([]));
  });

  test("every flag, with and without the run command", () => {
    const args = ["--output", "json", "--duration=1.5", "--ring-buffer-size", "32M", "--max-connections", "1048576", "--connection-state", "socket-storage"];
    const expected: Invocation = {
      command: "run",
      options: { output: "json", duration: 1.5, ringBufferSize: 32 * 1024 * 1024, maxConnections: 1_048_576, connectionState: "socket-storage", ...control },
    };
    expect(parseCommandLine(args)).toEqual(expected);
    expect(parseCommandLine(["run", ...args])).toEqual(expected);
  });

  test.each([
    ["4096", 4096],
    ["4K", 4096],
    ["4k", 4096],
    ["4KiB", 4096],
    ["8M", 8 * 1024 * 1024],
    ["8MB", 8 * 1024 * 1024],
    ["16777216", 16 * 1024 * 1024],
    ["1G", 1024 * 1024 * 1024],
  ])("--ring-buffer-size %s is %d bytes", (text, bytes) => {
    const invocation = parseCommandLine(["--ring-buffer-size", text]);
    expect(invocation.command === "run" && invocation.options.ringBufferSize).toBe(bytes);
  });

  test("the last of a repeated flag wins", () => {
    const invocation = parseCommandLine(["--output", "json", "--output", "text"]);
    expect(invocation.command === "run" && invocation.options.output).toBe("text");
  });

  test("--version wins over the run options", () => {
    expect(parseCommandLine(["--output", "json", "--version"])).toEqual({ command: "version" });
  });
});

describe("run: runtime-control flags", () => {
  const options = runOptions;

  test("defaults: monitoring on, accesslog and connection metrics as Kmesh starts them, admin API on 127.0.0.1:15200", () => {
    expect(options()).toMatchObject(RUNTIME_CONTROL_DEFAULTS);
  });

  test.each([
    [["--accesslog=false"], { accesslog: false }],
    [["--accesslog"], { accesslog: true }],
    [["--accesslog", "F"], { accesslog: false }],
    [["--connection-metrics"], { connectionMetrics: true }],
    [["--connection-metrics=1"], { connectionMetrics: true }],
    [["--monitoring=False"], { monitoring: false }],
    [["--monitoring=false", "--accesslog=false"], { monitoring: false, accesslog: false }],
    [["--report-interval", "0.5"], { reportInterval: 0.5 }],
    [["--admin-addr", ""], { adminAddr: null }],
    [["--admin-addr="], { adminAddr: null }],
    [["--no-admin-api"], { adminAddr: null }],
    [["--no-admin-api", "--admin-addr", "[::1]:15201"], { adminAddr: null }],
    [["--admin-addr", "[::1]:15201"], { adminAddr: { host: "::1", port: 15201 } }],
    [["--admin-addr=localhost:9"], { adminAddr: { host: "localhost", port: 9 } }],
    [["--admin-socket", "/run/x/admin.sock"], { adminSocket: "/run/x/admin.sock" }],
    [["--admin-socket", ""], { adminSocket: null }],
    [["--admin-socket="], { adminSocket: null, adminAddr: { host: "127.0.0.1", port: 15200 } }],
    [["--no-admin-socket"], { adminSocket: null }],
    [["--no-admin-socket", "--admin-socket", "/run/x.sock"], { adminSocket: null }],
    [["--admin-addr", "", "--admin-socket", ""], { adminAddr: null, adminSocket: null }],
    [["--no-admin-api"], { adminAddr: null, adminSocket: undefined }],
    [["--admin-allow-uid", "1000", "--admin-allow-uid=0", "--admin-allow-gid", "4294967294"], { adminAllowUid: [1000, 0], adminAllowGid: [4294967294] }],
    [["--lock-file", "/tmp/x.lock"], { lockFile: "/tmp/x.lock" }],
    [["--log-level", "debug"], { logLevel: "debug" }],
    [["--workload-metrics"], { workloadMetrics: true }],
    [["--workload-metrics=false"], { workloadMetrics: false }],
    [["--metrics-addr", ":9102"], { metricsAddr: { host: "::", port: 9102 } }],
    [["--metrics-addr", "127.0.0.1:9102"], { metricsAddr: { host: "127.0.0.1", port: 9102 } }],
    [["--metrics-addr", "[::1]:9102"], { metricsAddr: { host: "::1", port: 9102 } }],
    [["--metrics-addr", ""], { metricsAddr: null, adminAddr: { host: "127.0.0.1", port: 15200 } }],
    [["--metrics-addr="], { metricsAddr: null }],
    [["--no-metrics-server"], { metricsAddr: null }],
    [["--metrics-prefix", "istio"], { metricsPrefix: "istio" }],
    [["--metrics-grace", "2.5"], { metricsGrace: 2.5 }],
    [["--cluster-name", "east-1"], { clusterName: "east-1" }],
    [["--trust-domain", "example.org"], { trustDomain: "example.org" }],
  ])("%j", (args, expected) => {
    expect(options(...args)).toMatchObject(expected);
    expect(options("run", ...args)).toMatchObject(expected);
  });
});

describe("run: --max-buffered-output", () => {
  const run = (...flags: string[]) => runOptions("run", ...flags);

  test("bytes with K, M, G suffixes; the sink's default when not given", () => {
    expect(run("--max-buffered-output", "256K").maxBufferedOutput).toBe(256 * 1024);
    expect(run("--max-buffered-output", "64M").maxBufferedOutput).toBe(64 << 20);
    expect(run("--max-buffered-output=4096").maxBufferedOutput).toBe(4096);
    expect(run().maxBufferedOutput).toBeUndefined();
    expect(DEFAULT_MAX_BUFFERED_OUTPUT_BYTES).toBe(64 << 20);
  });

  test("refused outside 4K..1G, with what is expected", () => {
    for (const value of ["1K", "4095", "2G", "lots"]) {
      expect(() => run("--max-buffered-output", value)).toThrow(
        `invalid value for --max-buffered-output: ${JSON.stringify(value)} (expected a number of bytes from 4K to 1G, e.g. 64M)`,
      );
    }
  });
});

describe("run: kubelet and filter flags", () => {
  test("not given: undefined, so that kube/kubelet/settings.ts applies the defaults", () => {
    const o = runOptions();
    for (const key of ["kubeletHost", "kubeletUrl", "kubeletTokenFile", "kubeletCaFile", "kubeletRefresh", "kubeletHold", "noKubelet", "namespace", "excludeNamespace", "pod"] as const) {
      expect(o[key]).toBeUndefined();
    }
  });

  test("given: checked values; the filters repeat", () => {
    expect(
      runOptions(
        "--kubelet-url", "https://10.0.0.5:10250/pods",
        "--kubelet-token-file", "/run/token",
        "--kubelet-ca-file", "/run/ca.crt",
        "--kubelet-refresh", "2.5",
        "--kubelet-hold", "0",
        "--namespace", "shop", "--namespace=prod",
        "--exclude-namespace", "kube-system",
        "--pod", "web-0", "--pod", "db-7d4b9c8f6d-x2x9q",
      ),
    ).toMatchObject({
      kubeletUrl: "https://10.0.0.5:10250/pods",
      kubeletTokenFile: "/run/token",
      kubeletCaFile: "/run/ca.crt",
      kubeletRefresh: 2.5,
      kubeletHold: 0,
      namespace: ["shop", "prod"],
      excludeNamespace: ["kube-system"],
      pod: ["web-0", "db-7d4b9c8f6d-x2x9q"],
    });
    expect(runOptions("run", "--no-kubelet").noKubelet).toBe(true);
    expect(runOptions("--kubelet-insecure-skip-tls-verify", "--kubelet-host", "fd00::5").kubeletInsecureSkipTlsVerify).toBe(true);
  });

  test.each([
    [["--kubelet-url", "ftp://x/pods"], 'invalid value for --kubelet-url: "ftp://x/pods" (expected an https:// (or http://) URL, e.g. https://10.0.0.5:10250/pods)'],
    [["--kubelet-url", "10.0.0.5:10250"], 'invalid value for --kubelet-url: "10.0.0.5:10250" (expected an https:// (or http://) URL, e.g. https://10.0.0.5:10250/pods)'],
    [["--kubelet-host", "a b"], 'invalid value for --kubelet-host: "a b" (expected a host name or IP address)'],
    [["--kubelet-refresh", "0.5"], 'invalid value for --kubelet-refresh: "0.5" (expected a number of seconds from 1 to 3600)'],
    [["--kubelet-hold", "61"], 'invalid value for --kubelet-hold: "61" (expected a number of seconds from 0 to 60)'],
    [["--kubelet-hold"], "missing value for --kubelet-hold (expected a number of seconds from 0 to 60)"],
    [["--namespace", "Shop"], `invalid value for --namespace: "Shop" (expected a namespace name (lower-case letters, digits, '-'))`],
    [["--exclude-namespace", "a_b"], `invalid value for --exclude-namespace: "a_b" (expected a namespace name (lower-case letters, digits, '-'))`],
    [["--pod=-web"], `invalid value for --pod: "-web" (expected a pod name (lower-case letters, digits, '-', '.'))`],
    [["--no-kubelet", "--namespace", "shop"], "--namespace needs the kubelet's pod list: it cannot be used with --no-kubelet"],
    [["--no-kubelet", "--kubelet-url", "https://x/pods"], "--kubelet-url needs the kubelet's pod list: it cannot be used with --no-kubelet"],
    [["--kubelet-ca-file", "/ca", "--kubelet-insecure-skip-tls-verify"], "--kubelet-ca-file and --kubelet-insecure-skip-tls-verify contradict each other: give one of them"],
    [["--kubelet-insecure"], "unknown flag --kubelet-insecure (did you mean --kubelet-insecure-skip-tls-verify?)"],
  ])("%j is refused", (argv, message) => {
    expect(usageError(...argv)).toBe(message);
  });
});

describe("run: API-server flags", () => {
  test("defaults and given values", () => {
    expect(runOptions()).toMatchObject({ clusterDomain: "cluster.local", kubeApi: undefined, noKubeApi: undefined, kubeconfig: undefined });
    expect(runOptions("--kube-api", "--kubeconfig", "/k/config", "--cluster-domain", "corp.example")).toMatchObject({
      kubeApi: true,
      kubeconfig: "/k/config",
      clusterDomain: "corp.example",
    });
  });
  test("contradictions and bad values are one usage line", () => {
    expect(usageError("--kube-api", "--no-kube-api")).toBe("--kube-api and --no-kube-api contradict each other: give one of them");
    expect(usageError("--no-kube-api", "--kubeconfig", "/k")).toBe("--kubeconfig needs the API server: it cannot be used with --no-kube-api");
    expect(usageError("--cluster-domain", "Bad_Domain")).toBe('invalid value for --cluster-domain: "Bad_Domain" (expected a DNS domain, e.g. cluster.local)');
  });
  test("filters without the kubelet are fine when the API server is asked for", () => {
    expect(runOptions("--no-kubelet", "--kube-api", "--namespace", "shop").namespace).toEqual(["shop"]);
    expect(usageError("--no-kubelet", "--namespace", "shop")).toContain("--no-kubelet");
  });
});

describe("run: OTLP export flags", () => {
  test("the endpoint: /v1/logs added to a base URL, kept when given; the tunables' defaults are the exporter's", () => {
    expect(runOptions().otlpEndpoint).toBeUndefined();
    expect(runOptions("--otlp-endpoint", "http://collector:4318").otlpEndpoint).toBe("http://collector:4318/v1/logs");
    expect(runOptions("--otlp-endpoint", "https://collector.example/otlp/").otlpEndpoint).toBe("https://collector.example/otlp/v1/logs");
    expect(runOptions("--otlp-endpoint", "http://[::1]:4318/v1/logs").otlpEndpoint).toBe("http://[::1]:4318/v1/logs");
    expect(
      runOptions(
        "--output", "none", "--otlp-endpoint", "http://c:4318", "--otlp-headers-file", "/h", "--otlp-ca-file", "/ca",
        "--otlp-batch-size", "200", "--otlp-batch-delay", "0.5", "--otlp-queue-size", "5000", "--otlp-timeout", "3", "--otlp-flush-timeout", "0",
      ),
    ).toMatchObject({
      output: "none",
      otlpHeadersFile: "/h",
      otlpCaFile: "/ca",
      otlpBatchSize: 200,
      otlpBatchDelay: 0.5,
      otlpQueueSize: 5000,
      otlpTimeout: 3,
      otlpFlushTimeout: 0,
    });
    expect(runOptions("--otlp-endpoint", "http://c", "--otlp-insecure-skip-verify").otlpInsecureSkipVerify).toBe(true);
  });

  const url = "an http:// or https:// URL of an OTLP/HTTP collector, without credentials or query, e.g. http://otel-collector:4318";
  test.each([
    [["--otlp-endpoint", "collector:4318"], `invalid value for --otlp-endpoint: "collector:4318" (expected ${url})`],
    [["--otlp-endpoint", "grpc://collector:4317"], `invalid value for --otlp-endpoint: "grpc://collector:4317" (expected ${url})`],
    [["--otlp-endpoint", "http://collector:4318/v1/logs?x=1"], `invalid value for --otlp-endpoint: "http://collector:4318/v1/logs?x=1" (expected ${url})`],
    [["--otlp-endpoint", "http://"], `invalid value for --otlp-endpoint: "http://" (expected ${url})`],
    [["--otlp-endpoint"], `missing value for --otlp-endpoint (expected ${url})`],
    [["--output", "none"], "--output none writes no lines: give --otlp-endpoint to send the reports to a collector, or --output text or json"],
    [["--otlp-headers-file", "/h"], "--otlp-headers-file needs --otlp-endpoint: without it, it has nothing to change"],
    [["--otlp-queue-size", "10"], "--otlp-queue-size needs --otlp-endpoint: without it, it has nothing to change"],
    [["--otlp-insecure-skip-verify"], "--otlp-insecure-skip-verify needs --otlp-endpoint: without it, it has nothing to change"],
    [["--otlp-endpoint", "https://c", "--otlp-ca-file", "/ca", "--otlp-insecure-skip-verify"], "--otlp-ca-file and --otlp-insecure-skip-verify contradict each other: give one of them"],
    [["--otlp-endpoint", "http://c", "--otlp-batch-size", "0"], 'invalid value for --otlp-batch-size: "0" (expected a whole number of reports from 1 to 16384)'],
    [["--otlp-endpoint", "http://c", "--otlp-queue-size", "1e5"], 'invalid value for --otlp-queue-size: "1e5" (expected a whole number of reports from 1 to 10000000)'],
    [["--otlp-endpoint", "http://c", "--otlp-batch-delay", "0"], 'invalid value for --otlp-batch-delay: "0" (expected a number of seconds from 0.01 to 60)'],
    [["--otlp-endpoint", "http://c", "--otlp-flush-timeout", "301"], 'invalid value for --otlp-flush-timeout: "301" (expected a number of seconds from 0 to 300)'],
  ])("%j is refused", (argv, message) => {
    expect(usageError(...argv)).toBe(message);
  });

  test("a bad endpoint, as a user meets it: one line, exit code 2, before anything starts", async () => {
    const { stdout, stderr, exitCode } = await runCli("--otlp-endpoint", "ftp://collector");
    expect({ exitCode, stderr, stdout }).toEqual({ exitCode: 2, stderr: `kmesh-accesslog: invalid value for --otlp-endpoint: "ftp://collector" (expected ${url})\n`, stdout: "" });
  });
});

describe("check command line", () => {
  /** check's options when no flag is given. */
  const none = {
    libbpf: undefined,
    kubeletHost: undefined,
    kubeletUrl: undefined,
    kubeletTokenFile: undefined,
    kubeletCaFile: undefined,
    kubeletInsecureSkipTlsVerify: undefined,
    noKubelet: undefined,
    kubeApi: undefined,
    noKubeApi: undefined,
    kubeconfig: undefined,
  };

  test("flags reach the options", () => {
    expect(parseCommandLine(["check"])).toEqual({ command: "check", options: { ...none, json: false } });
    expect(parseCommandLine(["check", "--json", "--no-kubelet", "--libbpf", "/x/libbpf.so.1"])).toEqual({
      command: "check",
      options: { ...none, json: true, noKubelet: true, libbpf: "/x/libbpf.so.1" },
    });
    expect(parseCommandLine(["check", "--kubeconfig", "/root/.kube/config"])).toEqual({
      command: "check",
      options: { ...none, json: false, kubeconfig: "/root/.kube/config" },
    });
    expect(parseCommandLine(["check", "--no-kube-api"])).toEqual({ command: "check", options: { ...none, json: false, noKubeApi: true } });
    expect(
      parseCommandLine([
        "check",
        "--kubelet-url",
        "https://127.0.0.1:10250/pods",
        "--kubelet-token-file",
        "/t",
        "--kubelet-insecure-skip-tls-verify",
      ]),
    ).toEqual({
      command: "check",
      options: { ...none, json: false, kubeletUrl: "https://127.0.0.1:10250/pods", kubeletTokenFile: "/t", kubeletInsecureSkipTlsVerify: true },
    });
  });

  const mistakes: [string[], string][] = [
    [["check", "--no-kubelet", "--kubelet-host", "10.0.0.1"], "--kubelet-host needs the kubelet's pod list: it cannot be used with --no-kubelet"],
    [
      ["check", "--kubelet-ca-file", "/ca", "--kubelet-insecure-skip-tls-verify"],
      "--kubelet-ca-file and --kubelet-insecure-skip-tls-verify contradict each other: give one of them",
    ],
    [["check", "--kube-api", "--no-kube-api"], "--kube-api and --no-kube-api contradict each other: give one of them"],
    [["check", "--no-kube-api", "--kubeconfig", "/k"], "--kubeconfig needs the API server: it cannot be used with --no-kube-api"],
    [["check", "--jsn"], "unknown flag --jsn (did you mean --json?)"],
    [["check", "--admin-addr"], "unknown flag --admin-addr"],
    [["check", "--duration", "1"], "unknown flag --duration"],
    [["check", "now"], 'unexpected argument "now"'],
    [["check", "--kubelet-url", "ftp://x"], 'invalid value for --kubelet-url: "ftp://x" (expected an https:// (or http://) URL, e.g. https://10.0.0.5:10250/pods)'],
  ];
  test.each(mistakes)("%p is refused", (argv, message) => {
    expect(() => parseCommandLine(argv)).toThrow(new UsageError(message));
  });
});

describe("client commands: what they send", () => {
  // neither --admin-addr nor --admin-socket: client.ts chooses (test/unit/admin/client.test.ts)
  const LOCAL = { kind: "local", flags: { adminAddr: undefined, adminSocket: undefined } } as const;
  test.each([
    [["accesslog", "enable"], { command: "accesslog", enable: true, target: LOCAL }],
    [["accesslog", "disable", "--admin-addr", "[::1]:1"], { command: "accesslog", enable: false, target: { kind: "local", flags: { adminAddr: { host: "::1", port: 1 }, adminSocket: undefined } } }],
    [["accesslog", "disable", "--admin-socket", "/run/a.sock"], { command: "accesslog", enable: false, target: { kind: "local", flags: { adminAddr: undefined, adminSocket: "/run/a.sock" } } }],
    [["status"], { command: "status", json: false, target: LOCAL }],
    [["status", "--json", "--admin-socket=/s"], { command: "status", json: true, target: { kind: "local", flags: { adminAddr: undefined, adminSocket: "/s" } } }],
    // every agent pod through the API server, or the one named (kmeshctl takes it before the state)
    [["accesslog", "enable", "--kubeconfig", "/k"], { command: "accesslog", enable: true, target: { kind: "cluster", kubeconfig: "/k", pod: null } }],
    [["accesslog", "kmesh-abcde", "disable", "--kubeconfig", "/k"], { command: "accesslog", enable: false, target: { kind: "cluster", kubeconfig: "/k", pod: "kmesh-abcde" } }],
    [["status", "--in-cluster", "kmesh-abcde"], { command: "status", json: false, target: { kind: "cluster", kubeconfig: null, pod: "kmesh-abcde" } }],
    [["monitoring", "kmesh-abcde", "--all", "enable", "--kubeconfig", "/k"], { command: "monitoring", requests: [{ path: "/monitoring", enable: true }], target: { kind: "cluster", kubeconfig: "/k", pod: "kmesh-abcde" } }],
  ])("%j", (args, expected) => {
    expect(parseCommandLine(args)).toEqual(expected as never);
  });

  test("monitoring sends kmeshctl's requests in kmeshctl's order: --all, --accesslog, --workloadMetrics, --connectionMetrics", () => {
    const args = ["monitoring", "--connectionMetrics", "enable", "--workloadMetrics", "disable", "--accesslog", "enable", "--all", "enable"];
    expect(parseCommandLine(args)).toEqual({
      command: "monitoring",
      target: LOCAL,
      requests: [
        { path: "/monitoring", enable: true },
        { path: "/accesslog", enable: true },
        { path: "/workload_metrics", enable: false },
        { path: "/connection_metrics", enable: true },
      ],
    });
    // kebab-case spellings work too
    expect(parseCommandLine(["monitoring", "--connection-metrics", "disable"])).toMatchObject({
      requests: [{ path: "/connection_metrics", enable: false }],
    });
  });
});

describe("runtime-control and client-command mistakes: one line on stderr, exit 2", () => {
  const cases: [string[], string][] = [
    [["--accesslog=yes"], 'invalid value for --accesslog: "yes" (expected true or false: 1, t, T, TRUE, true, True, 0, f, F, FALSE, false, False)'],
    [["--monitoring=false", "--accesslog"], "--accesslog cannot be on while --monitoring is off"],
    [["--monitoring=false", "--connection-metrics"], "--connection-metrics cannot be on while --monitoring is off"],
    [["--report-interval", "0"], 'invalid value for --report-interval: "0" (expected a number of seconds from 0.1 to 86400)'],
    [["--report-interval", "5s"], 'invalid value for --report-interval: "5s" (expected a number of seconds from 0.1 to 86400)'],
    [["--metrics-addr", "15020"], 'invalid value for --metrics-addr: "15020" (expected host:port, :port for every address (Kmesh\'s :15020), or "" for none)'],
    [["--metrics-prefix", "prom"], 'invalid value for --metrics-prefix: "prom" (expected kmesh or istio)'],
    [["--monitoring=false", "--workload-metrics"], "--workload-metrics cannot be on while --monitoring is off"],
    [["--admin-addr"], 'missing value for --admin-addr (expected host:port, or "" for no admin API on TCP)'],
    [["--admin-addr", "--output", "json"], 'missing value for --admin-addr (expected host:port, or "" for no admin API on TCP)'],
    [["--admin-addr", "15200"], 'invalid value for --admin-addr: "15200" (expected host:port, e.g. 127.0.0.1:15200 or [::1]:15200, or "" for no admin API on TCP)'],
    [["--admin-addr", "::1:15200"], 'invalid value for --admin-addr: "::1:15200" (expected host:port, e.g. 127.0.0.1:15200 or [::1]:15200, or "" for no admin API on TCP)'],
    [["--admin-socket"], 'missing value for --admin-socket (expected an absolute path, or "" for no Unix socket)'],
    [["--admin-socket", "admin.sock"], 'invalid value for --admin-socket: "admin.sock" (expected an absolute path of at most 107 bytes, or "" for no Unix socket)'],
    [["--admin-socket", `/${"s".repeat(107)}`], `invalid value for --admin-socket: "/${"s".repeat(107)}" (expected an absolute path of at most 107 bytes, or "" for no Unix socket)`],
    [["--admin-allow-uid", "root"], 'invalid value for --admin-allow-uid: "root" (expected a numeric user id)'],
    [["--admin-allow-uid", "1.5"], 'invalid value for --admin-allow-uid: "1.5" (expected a numeric user id)'],
    [["--admin-allow-gid", "4294967295"], 'invalid value for --admin-allow-gid: "4294967295" (expected a numeric group id)'],
    [["--admin-allow-gid"], "missing value for --admin-allow-gid (expected a numeric group id)"],
    [["--log-level", "trace"], 'invalid value for --log-level: "trace" (expected error, warn, info, debug)'],
    [["--lock-file", "agent.lock"], 'invalid value for --lock-file: "agent.lock" (expected an absolute path)'],
    [["accesslog"], "missing argument: accesslog enable or accesslog disable"],
    [["accesslog", "on"], 'invalid value for accesslog: "on" (expected enable or disable)'],
    [["accesslog", "kmesh-pod", "enable"], 'unexpected argument "kmesh-pod" (a pod name needs --kubeconfig or --in-cluster; without them, --admin-addr names the one agent)'],
    [["accesslog", "enable", "x"], 'unexpected argument "x" (a pod name needs --kubeconfig or --in-cluster; without them, --admin-addr names the one agent)'],
    [["accesslog", "a", "b", "enable", "--kubeconfig", "/k"], 'unexpected argument "b" (name at most one agent pod)'],
    [["accesslog", "enable", "--kubeconfig", "/k", "--in-cluster"], "--kubeconfig and --in-cluster contradict each other: give one of them"],
    [["status", "--kubeconfig", "/k", "--admin-addr", "127.0.0.1:1"], "--admin-addr and --kubeconfig contradict each other: --admin-addr names one agent, the other reaches the agent pods"],
    [["status", "--in-cluster", "--admin-socket", "/run/a.sock"], "--admin-socket and --in-cluster contradict each other: --admin-socket names one agent, the other reaches the agent pods"],
    [["accesslog", "enable", "--admin-addr", ""], "missing value for --admin-addr (expected host:port of a running agent, e.g. 127.0.0.1:15200)"],
    [["accesslog", "enable", "--admin-addr"], "missing value for --admin-addr (expected host:port of a running agent, e.g. 127.0.0.1:15200)"],
    [["accesslog", "enable", "--bogus"], "unknown flag --bogus"],
    [["accesslog", "enable", "--admin-socket", "relative.sock"], 'invalid value for --admin-socket: "relative.sock" (expected the absolute path of a running agent\'s Unix socket)'],
    [["status", "--admin-addr", "127.0.0.1:1", "--admin-socket", "/run/a.sock"], "--admin-addr and --admin-socket both name the agent: give one of them"],
    [["monitoring"], "nothing to switch: give --accesslog, --workloadMetrics, --connectionMetrics or --all, each enable or disable"],
    [["monitoring", "--all", "on"], 'invalid value for --all: "on" (expected enable or disable)'],
    [["monitoring", "--accesslog"], "missing value for --accesslog (expected enable or disable)"],
    [["monitoring", "kmesh-pod", "--all", "enable"], 'unexpected argument "kmesh-pod" (a pod name needs --kubeconfig or --in-cluster; without them, --admin-addr names the one agent)'],
    [["monitoring", "--workloadMetric", "enable"], "unknown flag --workloadMetric (did you mean --workloadMetrics?)"],
    [["status", "--jsn"], "unknown flag --jsn (did you mean --json?)"],
    [["status", "now"], 'unexpected argument "now" (a pod name needs --kubeconfig or --in-cluster; without them, --admin-addr names the one agent)'],
    [["filter", "--port", "80"], "--port changes the filters: write `filter set` before the flags (it replaces every filter)"],
    [["filter", "set", "--port", "80000"], 'invalid value for --port: "80000" (expected a port number from 1 to 65535)'],
    [["filter", "set", "--cidr", "10.0.0.0/40"], 'invalid value for --cidr: "10.0.0.0/40" (expected an IPv4 or IPv6 network, e.g. 10.244.0.0/16 or fd00::/8 (an address alone is /32 or /128))'],
    [["filter", "set", "--direction", "up"], 'invalid value for --direction: "up" (expected OUTBOUND or INBOUND)'],
    [["filter", "clear"], 'unexpected argument "clear" (a pod name needs --kubeconfig or --in-cluster; without them, --admin-addr names the one agent)'],
    [["--min-duration=-1"], 'invalid value for --min-duration: "-1" (expected a number of seconds from 0 to 2147483, e.g. 0.5)'],
    [["--no-kubelet", "--exclude-pod", "web-0"], "--exclude-pod needs the kubelet's pod list: it cannot be used with --no-kubelet"],
  ];
  test.concurrent.each(cases)("%j", async (args, message) => {
    expect(await runCli(...args)).toEqual({ exitCode: 2, stderr: `kmesh-accesslog: ${message}\n`, stdout: "" });
  });
});

describe("filters: the flags of run and of `filter set`, one model", () => {
  test("run: the filter flags, checked; networks canonical; direction in any case", () => {
    expect(
      runOptions("--port", "80", "--port=443", "--exclude-port", "22", "--cidr", "10.1.2.3/8", "--exclude-cidr", "fd00::1", "--direction", "inbound", "--failed-only", "--min-duration", "0.5", "--exclude-pod", "web-0"),
    ).toMatchObject({ port: [80, 443], excludePort: [22], cidr: ["10.0.0.0/8"], excludeCidr: ["fd00::1/128"], direction: "INBOUND", failedOnly: true, minDuration: 0.5, excludePod: ["web-0"] });
    // Filters by the connection alone need no pod names.
    expect(runOptions("--no-kubelet", "--port", "80").port).toEqual([80]);
  });
  test("filter: shows; filter set: replaces them all (what is not given is none)", () => {
    const target = { kind: "local", flags: { adminAddr: { host: "127.0.0.1", port: 15200 }, adminSocket: undefined } };
    expect(parseCommandLine(["filter", "--admin-addr", "127.0.0.1:15200"])).toEqual({ command: "filter", set: null, json: false, target } as Invocation);
    const set = parseCommandLine(["filter", "set", "--port", "80", "--exclude-namespace", "kube-system", "--admin-addr", "127.0.0.1:15200", "--json"]);
    expect(set).toEqual({
      command: "filter",
      set: { namespace: [], excludeNamespace: ["kube-system"], pod: [], excludePod: [], port: [80], excludePort: [], cidr: [], excludeCidr: [], direction: null, failedOnly: false, minDuration: null },
      json: true,
      target,
    } as Invocation);
    expect((parseCommandLine(["filter", "set", "kmesh-accesslog-x2", "--kubeconfig", "/k"]) as { target: unknown }).target).toEqual({ kind: "cluster", kubeconfig: "/k", pod: "kmesh-accesslog-x2" });
  });
});
