/**
 * A local Kubernetes API server of our own for tests: HTTPS on 127.0.0.1 (a certificate made now
 * by openssl, see ../support/kubelet-server.ts), a bearer token required, and the real list/watch protocol
 * for Services, EndpointSlices and Pods:
 *   GET <path>?limit=&continue=                        a paginated list with metadata.resourceVersion
 *   GET <path>?watch=1&resourceVersion=R&allowWatchBookmarks=true&timeoutSeconds=T
 *                                                      the events after R, then live ones, one JSON
 *                                                      object per line, chunked (objects split
 *                                                      across chunks on purpose)
 *   POST /apis/authentication.k8s.io/v1/tokenreviews    whose is a token (`reviewTokens`: token →
 *                                                      username; any other token is not valid)
 * A watch from a resourceVersion older than the last compaction is answered as the real server
 * does: an ERROR event with a 410 Status (or, with `expireAsHttp`, HTTP 410). The test edits the
 * objects as it goes, and can break every open watch, compact history, or send bookmarks.
 *
 *   await using api = await startApiServer();
 *   api.put("services", serviceObject); api.breakWatches(); api.compact();
 *   agent args: ["--kubeconfig", api.kubeconfig]
 *
 * Also a namespace's pods (`GET /api/v1/namespaces/<ns>/pods?labelSelector=k=v&fieldSelector=
 * metadata.name=<name>`) and a pod's port-forward as the API server passes it to the kubelet: a
 * WebSocket with the subprotocol v4.channel.k8s.io on `.../pods/<name>/portforward?ports=<port>`,
 * channel 0 the data and 1 the errors, the port first on each (src/kube/apiserver/port-forward.ts).
 * Each one is a real TCP connection, made by this (root) process, to where `forwardTo` says the
 * pod's port is (by default the pod's IP and that port).
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Server } from "bun";
import { makeCertificates } from "../support/kubelet-server.ts";

export type Kind = "services" | "endpointslices" | "pods";

const PATHS: Record<string, Kind> = {
  "/api/v1/services": "services",
  "/apis/discovery.k8s.io/v1/endpointslices": "endpointslices",
  "/api/v1/pods": "pods",
};
const LIST_KIND: Record<Kind, [string, string]> = {
  services: ["ServiceList", "v1"],
  endpointslices: ["EndpointSliceList", "discovery.k8s.io/v1"],
  pods: ["PodList", "v1"],
};

interface Stored {
  rv: number;
  type: "ADDED" | "MODIFIED" | "DELETED";
  object: Record<string, unknown>;
}

interface Watcher {
  kind: Kind;
  controller: ReadableStreamDefaultController<Uint8Array>;
}

export interface RequestLog {
  kind: Kind | "portforward";
  watch: boolean;
  resourceVersion: string | null;
  status: number;
}

type Meta = { name: string; namespace?: string; resourceVersion?: string };
const keyOf = (o: Record<string, unknown>) => {
  const m = o.metadata as Meta;
  return `${m.namespace ?? ""}/${m.name}`;
};

export class LocalApiServer implements AsyncDisposable {
  readonly dir: string;
  readonly caFile: string;
  readonly tokenFile: string;
  readonly kubeconfig: string;
  #token = `api-token-${crypto.randomUUID()}`;
  readonly #tls: { cert: string; key: string };
  #server: Server<Forward> | null = null;
  #port = 0;
  #rv = 1000;
  #compactedRv = 0;
  readonly #objects: Record<Kind, Map<string, Record<string, unknown>>> = { services: new Map(), endpointslices: new Map(), pods: new Map() };
  readonly #history: Record<Kind, Stored[]> = { services: [], endpointslices: [], pods: [] };
  readonly #watchers = new Set<Watcher>();
  readonly requests: RequestLog[] = [];
  /** answer an expired watch with HTTP 410 instead of an ERROR event */
  expireAsHttp = false;
  /** lists answered with this status instead (e.g. 403) */
  listStatus: Partial<Record<Kind, number>> = {};
  /** lists answered only after this long */
  listDelayMs = 0;
  /** watches end as soon as they have sent what history holds (a proxy that closes streams) */
  endWatchesAtOnce = false;
  /** where a pod's port is, for port-forwards; null: nothing listens there */
  forwardTo: (pod: Record<string, unknown>, port: number) => { host: string; port: number } | null = (pod, port) => {
    const ip = (pod.status as { podIP?: string } | undefined)?.podIP;
    return ip === undefined ? null : { host: ip, port };
  };
  /** port-forwards answered with this status instead of the upgrade (e.g. 403) */
  portForwardStatus: number | null = null;
  /** the tokens a TokenReview finds valid, and whose they are */
  readonly reviewTokens = new Map<string, string>();
  /** TokenReviews answered */
  tokenReviews = 0;

  constructor() {
    this.dir = mkdtempSync(join(tmpdir(), "apiserver-test-"));
    const certs = makeCertificates(this.dir);
    this.caFile = certs.caFile;
    this.#tls = { cert: readFileSync(certs.certFile, "utf8"), key: readFileSync(certs.keyFile, "utf8") };
    this.tokenFile = join(this.dir, "token");
    writeFileSync(this.tokenFile, `${this.#token}\n`);
    this.kubeconfig = join(this.dir, "kubeconfig");
  }

  /** Replaces the token the server accepts and the file that holds it (a rotation). */
  rotateToken(): void {
    this.#token = `api-token-${crypto.randomUUID()}`;
    writeFileSync(this.tokenFile, `${this.#token}\n`);
  }

  get url(): string {
    return `https://127.0.0.1:${this.#port}`;
  }

  get resourceVersion(): number {
    return this.#rv;
  }

  /** Adds or replaces an object (ADDED or MODIFIED), with the next resourceVersion. */
  put(kind: Kind, object: Record<string, unknown>): void {
    const key = keyOf(object);
    const type = this.#objects[kind].has(key) ? "MODIFIED" : "ADDED";
    const rv = ++this.#rv;
    const stored = { ...object, metadata: { ...(object.metadata as object), resourceVersion: String(rv) } };
    this.#objects[kind].set(key, stored);
    this.#event(kind, { rv, type, object: stored });
  }

  remove(kind: Kind, namespace: string, name: string): void {
    const key = `${namespace}/${name}`;
    const old = this.#objects[kind].get(key);
    if (old === undefined) return;
    this.#objects[kind].delete(key);
    const rv = ++this.#rv;
    this.#event(kind, { rv, type: "DELETED", object: { ...old, metadata: { ...(old.metadata as object), resourceVersion: String(rv) } } });
  }

  #event(kind: Kind, stored: Stored): void {
    this.#history[kind].push(stored);
    for (const w of this.#watchers) if (w.kind === kind) this.#send(w, { type: stored.type, object: stored.object });
  }

  /** One event line, in two chunks split inside the object. */
  #send(w: Watcher, event: unknown): void {
    const bytes = new TextEncoder().encode(`${JSON.stringify(event)}\n`);
    const cut = Math.floor(bytes.length / 2);
    try {
      w.controller.enqueue(bytes.subarray(0, cut));
      w.controller.enqueue(bytes.subarray(cut));
    } catch {
      this.#watchers.delete(w);
    }
  }

  /** A BOOKMARK with the current resourceVersion on every open watch. */
  bookmark(): void {
    for (const w of this.#watchers) this.#send(w, { type: "BOOKMARK", object: { kind: "Pod", apiVersion: "v1", metadata: { resourceVersion: String(this.#rv) } } });
  }

  /** Forgets history: a watch from an older resourceVersion is now "too old" (410). */
  compact(): void {
    this.#compactedRv = this.#rv;
    for (const kind of Object.keys(this.#history) as Kind[]) this.#history[kind] = [];
  }

  /**
   * Every open watch breaks mid-stream: the server drops every connection (as a restarting API
   * server or a load balancer does) and listens again at once on the same port.
   */
  breakWatches(): void {
    this.stop();
    this.start();
  }

  get openWatches(): number {
    return this.#watchers.size;
  }

  /** Writes a kubeconfig for `url` with the token user; returns its path. */
  #writeKubeconfig(): void {
    writeFileSync(
      this.kubeconfig,
      [
        "apiVersion: v1",
        "kind: Config",
        "current-context: test",
        "clusters:",
        "- name: test-cluster",
        "  cluster:",
        `    server: ${this.url}`,
        `    certificate-authority: ${this.caFile}`,
        "contexts:",
        "- name: test",
        "  context: {cluster: test-cluster, user: test-user}",
        "users:",
        "- name: test-user",
        "  user:",
        `    tokenFile: ${this.tokenFile}`,
        "",
      ].join("\n"),
    );
  }

  start(): void {
    if (this.#server !== null) return;
    this.#server = Bun.serve<Forward>({
      hostname: "127.0.0.1",
      port: this.#port,
      tls: this.#tls,
      idleTimeout: 0,
      fetch: (request, server) => this.#answer(request, server),
      websocket: {
        open: (ws) => forwardOpen(ws),
        message: (ws, message) => forwardMessage(ws, message),
        close: (ws) => void ws.data.tcp?.end(),
      },
    });
    this.#port = this.#server.port ?? 0;
    this.#writeKubeconfig();
  }

  stop(): void {
    this.#watchers.clear();
    this.#server?.stop(true);
    this.#server = null;
  }

  #status(code: number, reason: string, message: string): Response {
    return Response.json({ kind: "Status", apiVersion: "v1", metadata: {}, status: "Failure", message, reason, code }, { status: code });
  }

  async #answer(request: Request, server: Server<Forward>): Promise<Response | undefined> {
    const url = new URL(request.url);
    const namespaced = /^\/api\/v1\/namespaces\/([^/]+)\/pods(?:\/([^/]+)\/portforward)?$/.exec(url.pathname);
    if (namespaced !== null) {
      if (request.headers.get("authorization") !== `Bearer ${this.#token}`) return this.#status(401, "Unauthorized", "Unauthorized");
      const [, namespace, pod] = namespaced as unknown as [string, string, string | undefined];
      return pod === undefined ? this.#namespacePods(namespace, url) : this.#portForward(request, server, namespace, pod, url);
    }
    if (url.pathname === "/apis/authentication.k8s.io/v1/tokenreviews") return this.#tokenReview(request);
    const kind = PATHS[url.pathname];
    if (kind === undefined) return this.#status(404, "NotFound", "the server could not find the requested resource");
    const watch = url.searchParams.get("watch") === "1" || url.searchParams.get("watch") === "true";
    const log: RequestLog = { kind, watch, resourceVersion: url.searchParams.get("resourceVersion"), status: 200 };
    this.requests.push(log);
    const respond = (response: Response) => {
      log.status = response.status;
      return response;
    };
    if (request.headers.get("authorization") !== `Bearer ${this.#token}`) return respond(this.#status(401, "Unauthorized", "Unauthorized"));
    if (!watch && this.listDelayMs > 0) await Bun.sleep(this.listDelayMs);
    return respond(watch ? this.#watch(kind, url) : this.#list(kind, url));
  }

  /** A namespace's pods, by label (k=v, comma-separated) and metadata.name. */
  #namespacePods(namespace: string, url: URL): Response {
    const labels = (url.searchParams.get("labelSelector") ?? "").split(",").filter((term) => term !== "").map((term) => term.split("=") as [string, string]);
    const name = /^metadata\.name=(.+)$/.exec(url.searchParams.get("fieldSelector") ?? "")?.[1];
    const items = [...this.#objects.pods.values()].filter((pod) => {
      const metadata = pod.metadata as { name: string; namespace?: string; labels?: Record<string, string> };
      return metadata.namespace === namespace && (name === undefined || metadata.name === name) && labels.every(([k, v]) => metadata.labels?.[k] === v);
    });
    return Response.json({ kind: "PodList", apiVersion: "v1", metadata: { resourceVersion: String(this.#rv) }, items });
  }

  /** A pod's port-forward, as the kubelet serves it behind the API server. */
  #portForward(request: Request, server: Server<Forward>, namespace: string, name: string, url: URL): Response | undefined {
    const log: RequestLog = { kind: "portforward", watch: false, resourceVersion: null, status: 101 };
    this.requests.push(log);
    const fail = (code: number, reason: string, message: string) => {
      log.status = code;
      return this.#status(code, reason, message);
    };
    if (this.portForwardStatus !== null) return fail(this.portForwardStatus, "Forbidden", `pods "${name}" is forbidden: cannot create resource "pods/portforward" in namespace "${namespace}"`);
    const pod = this.#objects.pods.get(`${namespace}/${name}`);
    if (pod === undefined) return fail(404, "NotFound", `pods "${name}" not found`);
    const port = Number(url.searchParams.get("ports"));
    if (!(port >= 1 && port <= 65_535)) return fail(400, "BadRequest", 'query parameter "port" is required');
    const protocols = (request.headers.get("sec-websocket-protocol") ?? "").split(",").map((p) => p.trim());
    if (!protocols.includes("v4.channel.k8s.io")) return fail(400, "BadRequest", "unable to upgrade: no supported websocket protocol");
    const data: Forward = { name, port, target: this.forwardTo(pod, port), tcp: null, pending: [] };
    if (server.upgrade(request, { data, headers: { "Sec-WebSocket-Protocol": "v4.channel.k8s.io" } })) return undefined;
    return fail(400, "BadRequest", "unable to upgrade");
  }

  /** A TokenReview, as the real server answers one (201, the review with its status). */
  async #tokenReview(request: Request): Promise<Response> {
    if (request.method !== "POST") return this.#status(405, "MethodNotAllowed", "only POST");
    if (request.headers.get("authorization") !== `Bearer ${this.#token}`) return this.#status(401, "Unauthorized", "Unauthorized");
    const review = (await request.json().catch(() => null)) as { spec?: { token?: unknown } } | null;
    const token = review?.spec?.token;
    if (typeof token !== "string") return this.#status(400, "BadRequest", "spec.token: Required value");
    this.tokenReviews++;
    const username = this.reviewTokens.get(token);
    const status = username === undefined ? { authenticated: false, error: "invalid bearer token" } : { authenticated: true, user: { username, uid: "u", groups: ["system:serviceaccounts"] } };
    return Response.json({ kind: "TokenReview", apiVersion: "authentication.k8s.io/v1", metadata: {}, spec: { token }, status }, { status: 201 });
  }

  #list(kind: Kind, url: URL): Response {
    const forced = this.listStatus[kind];
    if (forced !== undefined) return this.#status(forced, forced === 403 ? "Forbidden" : "Error", `${kind} is forbidden: test`);
    const limit = Number(url.searchParams.get("limit") ?? "0") || Number.MAX_SAFE_INTEGER;
    const token = url.searchParams.get("continue");
    let rv = this.#rv;
    let offset = 0;
    if (token) ({ rv, offset } = JSON.parse(Buffer.from(token, "base64").toString()) as { rv: number; offset: number });
    const all = [...this.#objects[kind].values()].sort((a, b) => keyOf(a).localeCompare(keyOf(b)));
    const items = all.slice(offset, offset + limit);
    const more = offset + limit < all.length;
    const [listKind, apiVersion] = LIST_KIND[kind];
    return Response.json({
      kind: listKind,
      apiVersion,
      metadata: { resourceVersion: String(rv), ...(more ? { continue: Buffer.from(JSON.stringify({ rv, offset: offset + limit })).toString("base64") } : {}) },
      items,
    });
  }

  #watch(kind: Kind, url: URL): Response {
    const from = Number(url.searchParams.get("resourceVersion") ?? "0");
    const expired = from < this.#compactedRv;
    if (expired && this.expireAsHttp) return this.#status(410, "Expired", `too old resource version: ${from} (${this.#compactedRv})`);
    let watcher: Watcher | null = null;
    const stream = new ReadableStream<Uint8Array>({
      start: (controller) => {
        watcher = { kind, controller };
        if (expired) {
          this.#send(watcher, {
            type: "ERROR",
            object: { kind: "Status", apiVersion: "v1", metadata: {}, status: "Failure", message: `too old resource version: ${from} (${this.#compactedRv})`, reason: "Expired", code: 410 },
          });
          controller.close();
          return;
        }
        // A real API server sends the headers at once; Bun.serve sends them with the first bytes,
        // so a blank line (which watch clients skip, as JSON whitespace) goes first.
        controller.enqueue(new TextEncoder().encode("\n"));
        for (const e of this.#history[kind]) if (e.rv > from) this.#send(watcher, { type: e.type, object: e.object });
        if (this.endWatchesAtOnce) controller.close();
        else this.#watchers.add(watcher);
      },
      cancel: () => {
        if (watcher !== null) this.#watchers.delete(watcher);
      },
    });
    return new Response(stream, { headers: { "content-type": "application/json", "transfer-encoding": "chunked" } });
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** One port-forward: the pod, its port, where that is, the TCP connection made to it. */
interface Forward {
  name: string;
  port: number;
  target: { host: string; port: number } | null;
  tcp: import("bun").Socket<undefined> | null;
  /** data the client sent before the connection was made */
  pending: Uint8Array[];
}

type ForwardSocket = import("bun").ServerWebSocket<Forward>;

const channelFrame = (channel: number, bytes: Uint8Array) => {
  const frame = new Uint8Array(bytes.length + 1);
  frame[0] = channel;
  frame.set(bytes, 1);
  return frame;
};

function forwardOpen(ws: ForwardSocket): void {
  const { name, port, target } = ws.data;
  const portBytes = new Uint8Array([port & 0xff, port >> 8]);
  ws.send(channelFrame(0, portBytes));
  ws.send(channelFrame(1, portBytes));
  const refuse = (why: string) => {
    ws.send(channelFrame(1, new TextEncoder().encode(`error forwarding port ${port} to pod ${name}, uid : ${why}`)));
    ws.close();
  };
  if (target === null) return refuse("no address");
  Bun.connect({
    hostname: target.host,
    port: target.port,
    socket: {
      open(tcp) {
        ws.data.tcp = tcp;
        for (const bytes of ws.data.pending.splice(0)) tcp.write(bytes);
      },
      data(_tcp, bytes) {
        ws.send(channelFrame(0, new Uint8Array(bytes)));
      },
      close() {
        ws.close();
      },
    },
  }).catch((error: Error) => refuse(`failed to connect to ${target.host}:${target.port}: ${error.message}`));
}

function forwardMessage(ws: ForwardSocket, message: string | Buffer): void {
  const frame = typeof message === "string" ? new TextEncoder().encode(message) : new Uint8Array(message);
  if (frame[0] !== 0) return;
  const bytes = frame.slice(1);
  if (ws.data.tcp === null) ws.data.pending.push(bytes);
  else ws.data.tcp.write(bytes);
}

export async function startApiServer(): Promise<LocalApiServer> {
  const api = new LocalApiServer();
  try {
    api.start();
  } catch (error) {
    await api[Symbol.asyncDispose]();
    throw error;
  }
  return api;
}

// ── Real-shaped objects ──────────────────────────────────────────────────────

export function serviceObject(namespace: string, name: string, clusterIP: string, port: number, targetPort: number): Record<string, unknown> {
  return {
    metadata: { name, namespace, uid: crypto.randomUUID(), creationTimestamp: "2026-01-01T00:00:00Z", labels: { app: name } },
    spec: {
      type: "ClusterIP",
      clusterIP,
      clusterIPs: [clusterIP],
      ipFamilies: ["IPv4"],
      ipFamilyPolicy: "SingleStack",
      ports: [{ name: "http", protocol: "TCP", port, targetPort }],
      selector: { app: name },
      sessionAffinity: "None",
      internalTrafficPolicy: "Cluster",
    },
    status: { loadBalancer: {} },
  };
}

export function sliceObject(namespace: string, service: string, endpoints: { ip: string; pod: string }[], port: number): Record<string, unknown> {
  return {
    metadata: {
      name: `${service}-${Math.random().toString(36).slice(2, 7)}`,
      namespace,
      uid: crypto.randomUUID(),
      generateName: `${service}-`,
      labels: { "kubernetes.io/service-name": service, "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io" },
      ownerReferences: [{ apiVersion: "v1", kind: "Service", name: service, uid: "x", controller: true, blockOwnerDeletion: true }],
    },
    addressType: "IPv4",
    endpoints: endpoints.map((e) => ({
      addresses: [e.ip],
      conditions: { ready: true, serving: true, terminating: false },
      nodeName: "test-node",
      targetRef: { kind: "Pod", name: e.pod, namespace, uid: crypto.randomUUID() },
    })),
    ports: [{ name: "http", protocol: "TCP", port }],
  };
}
