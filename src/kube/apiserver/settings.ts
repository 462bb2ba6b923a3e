// Where the API server is and how to authenticate to it: in a cluster (KUBERNETES_SERVICE_HOST/
// _PORT and the service-account token and CA), or from a kubeconfig file (--kubeconfig) for runs
// outside one. Kubeconfig users with a token, a tokenFile, or a client certificate and key (as
// files or inline -data) are supported; exec and auth-provider plugins are not (they run
// programs; the message says so).
import { existsSync } from "node:fs";
import { dirname, isAbsolute, resolve } from "node:path";
import * as v from "valibot";
import { EXIT_USAGE, ExitError, readOr } from "../../errors.ts";
import type { RunOptions } from "../../options.ts";
import { readText as readFile, SERVICE_ACCOUNT_CA, SERVICE_ACCOUNT_TOKEN } from "../http.ts";
import { opt } from "../pod.ts";
import type { ApiServerConfig } from "./client.ts";
import { describeIssues } from "./objects.ts";

/** The API server was asked for (--kube-api, --kubeconfig) but cannot be used as given. */
export class ApiConfigError extends ExitError {
  override name = "ApiConfigError";
  override readonly exitCode = EXIT_USAGE;
  override readonly context = "cannot use the API server";
}

const KubeconfigSchema = v.object({
  "current-context": opt(v.string()),
  clusters: opt(
    v.array(
      v.object({
        name: v.string(),
        cluster: v.object({
          server: v.string(),
          "certificate-authority": opt(v.string()),
          "certificate-authority-data": opt(v.string()),
          "insecure-skip-tls-verify": opt(v.boolean()),
        }),
      }),
    ),
  ),
  users: opt(
    v.array(
      v.object({
        name: v.string(),
        user: opt(
          v.object({
            token: opt(v.string()),
            tokenFile: opt(v.string()),
            "client-certificate": opt(v.string()),
            "client-certificate-data": opt(v.string()),
            "client-key": opt(v.string()),
            "client-key-data": opt(v.string()),
            exec: opt(v.unknown()),
            "auth-provider": opt(v.unknown()),
          }),
        ),
      }),
    ),
  ),
  contexts: opt(v.array(v.object({ name: v.string(), context: v.object({ cluster: v.string(), user: opt(v.string()) }) }))),
});

const fromBase64 = (data: string) => Buffer.from(data, "base64").toString("utf8");

/**
 * A kubeconfig file's current context → settings. Rejects with ApiConfigError with a clear
 * message. The YAML parser is loaded only here: a run without a kubeconfig never loads it
 * (README, "Footprint").
 */
export async function kubeconfigSettings(file: string, readText = readFile): Promise<ApiServerConfig> {
  const text = readOr(readText, file, (why) => new ApiConfigError(`cannot read the kubeconfig ${file}: ${why}`));
  const { parse: parseYaml } = await import("yaml");
  let yaml: unknown;
  try {
    yaml = parseYaml(text);
  } catch (error) {
    throw new ApiConfigError(`the kubeconfig ${file} is not YAML: ${(error as Error).message.split("\n")[0]}`);
  }
  const parsed = v.safeParse(KubeconfigSchema, yaml);
  if (!parsed.success) throw new ApiConfigError(`the kubeconfig ${file} is not valid: ${describeIssues(parsed.issues)}`);
  const config = parsed.output;
  const contexts = config.contexts ?? [];
  const current = config["current-context"];
  const context = (current ? contexts.find((c) => c.name === current) : contexts[0])?.context;
  if (context === undefined) throw new ApiConfigError(`the kubeconfig ${file} has no context${current ? ` named ${JSON.stringify(current)}` : ""}`);
  const cluster = config.clusters?.find((c) => c.name === context.cluster)?.cluster;
  if (cluster === undefined) throw new ApiConfigError(`the kubeconfig ${file} has no cluster named ${JSON.stringify(context.cluster)}`);
  const user = (context.user ? config.users?.find((u) => u.name === context.user)?.user : undefined) ?? {};
  if ((user.exec != null || user["auth-provider"] != null) && !user.token && !user.tokenFile && !user["client-certificate"] && !user["client-certificate-data"]) {
    throw new ApiConfigError(
      `the kubeconfig ${file} user ${JSON.stringify(context.user)} authenticates with an exec or auth-provider plugin, which this agent does not run: ` +
        "use a user with a token, a tokenFile, or a client certificate and key",
    );
  }
  // Relative paths in a kubeconfig are relative to the file itself.
  const path = (p: string) => (isAbsolute(p) ? p : resolve(dirname(file), p));
  const read = (p: string, what: string) => readOr(readText, path(p), (why) => new ApiConfigError(`cannot read the ${what} ${path(p)} named in ${file}: ${why}`));
  const pem = (data: string | null | undefined, p: string | null | undefined, what: string) =>
    data ? fromBase64(data) : p ? read(p, what) : null;
  const cert = pem(user["client-certificate-data"], user["client-certificate"], "client certificate");
  const key = pem(user["client-key-data"], user["client-key"], "client key");
  if ((cert === null) !== (key === null)) throw new ApiConfigError(`the kubeconfig ${file}: a client certificate needs its key, and a key its certificate`);
  const server = cluster.server.replace(/\/+$/, "");
  if (!URL.canParse(server) || !/^https?:$/.test(new URL(server).protocol)) {
    throw new ApiConfigError(`the kubeconfig ${file}: the server ${JSON.stringify(cluster.server)} is not an http(s) URL`);
  }
  return {
    server,
    token: user.token ?? null,
    tokenFile: user.tokenFile ? path(user.tokenFile) : null,
    ca: pem(cluster["certificate-authority-data"], cluster["certificate-authority"], "certificate authority"),
    cert,
    key,
    insecureSkipTlsVerify: cluster["insecure-skip-tls-verify"] === true,
    origin: `kubeconfig ${file}`,
  };
}

/** In-cluster settings, or null when not in a cluster. */
export function inClusterSettings(
  env: Record<string, string | undefined> = process.env,
  exists: (path: string) => boolean = existsSync,
  readText = readFile,
): ApiServerConfig | null {
  const host = env.KUBERNETES_SERVICE_HOST;
  const port = env.KUBERNETES_SERVICE_PORT;
  if (!host || !port || !exists(SERVICE_ACCOUNT_TOKEN)) return null;
  const hostText = host.includes(":") ? `[${host}]` : host;
  return {
    server: `https://${hostText}:${port}`,
    tokenFile: SERVICE_ACCOUNT_TOKEN,
    token: null,
    ca: exists(SERVICE_ACCOUNT_CA) ? readText(SERVICE_ACCOUNT_CA) : null,
    cert: null,
    key: null,
    insecureSkipTlsVerify: false,
    origin: "in-cluster",
  };
}

/**
 * The settings of a run: null when off (--no-kube-api, or neither --kube-api/--kubeconfig nor a
 * cluster around). Rejects with ApiConfigError when asked for (--kube-api, --kubeconfig) but unusable.
 */
export async function resolveApiSettings(
  flags: Partial<RunOptions>,
  env: Record<string, string | undefined> = process.env,
  exists: (path: string) => boolean = existsSync,
  readText = readFile,
): Promise<ApiServerConfig | null> {
  if (flags.noKubeApi) return null;
  if (flags.kubeconfig !== undefined) return kubeconfigSettings(flags.kubeconfig, readText);
  const inCluster = inClusterSettings(env, exists, readText);
  if (inCluster !== null) return inCluster;
  if (flags.kubeApi) {
    const fallback = env.KUBECONFIG?.split(":")[0];
    if (fallback) return kubeconfigSettings(fallback, readText);
    throw new ApiConfigError(
      "--kube-api: not in a cluster (no KUBERNETES_SERVICE_HOST/_PORT and service-account token) and no kubeconfig: give --kubeconfig <file>",
    );
  }
  return null;
}
