/**
 * A local OpenTelemetry collector of our own for tests: `POST /v1/logs` on 127.0.0.1 (HTTP, or
 * HTTPS with a certificate made at test time: local-server.ts), each request gunzipped and decoded with the
 * OFFICIAL definitions: the protobufjs code the OpenTelemetry JS project generated from
 * opentelemetry-proto and shipped in @opentelemetry/otlp-transformer up to 0.214.0 (a dev
 * dependency pinned there for this; later releases no longer ship it), never with the agent's
 * encoder. How it answers is
 * the test's to choose: success, 503 with Retry-After, a slow answer, no answer at all.
 *
 *   await using collector = await startReceiver();
 *   agent args: ["--otlp-endpoint", collector.endpoint]
 *   collector.answer = () => ({ status: 503, headers: { "retry-after": "1" } });
 *   const [record] = await collector.waitForRecords((r) => r.attributes["source.port"] === 40000n);
 */
import { createRequire } from "node:module";
import { gunzipSync } from "node:zlib";
import { LocalServer, started } from "./local-server.ts";

/** The generated code, untyped: the shapes below are what its decode() and toObject() give. */
const generated = createRequire(import.meta.url)("@opentelemetry/otlp-transformer/build/src/generated/root.js") as {
  opentelemetry: { proto: { collector: { logs: { v1: { ExportLogsServiceRequest: GeneratedType } } } } };
};
interface GeneratedType {
  decode(bytes: Uint8Array): unknown;
  toObject(message: unknown, options: { longs: StringConstructor; bytes: StringConstructor; defaults: boolean }): unknown;
}
const ExportLogsServiceRequest = generated.opentelemetry.proto.collector.logs.v1.ExportLogsServiceRequest;

interface AnyValueObject {
  stringValue?: string;
  boolValue?: boolean;
  intValue?: string;
  doubleValue?: number;
  arrayValue?: unknown;
  kvlistValue?: unknown;
  bytesValue?: string;
}
interface KeyValueObject {
  key: string;
  value?: AnyValueObject;
}
interface RequestObject {
  resourceLogs: {
    resource?: { attributes: KeyValueObject[]; droppedAttributesCount: number };
    scopeLogs: {
      scope?: { name: string; version: string; attributes: KeyValueObject[] };
      logRecords: {
        timeUnixNano: string;
        observedTimeUnixNano: string;
        severityNumber: number;
        severityText: string;
        body?: AnyValueObject;
        attributes: KeyValueObject[];
        droppedAttributesCount: number;
        flags: number;
        traceId: string;
        spanId: string;
        eventName?: string;
      }[];
      schemaUrl: string;
    }[];
    schemaUrl: string;
  }[];
}

/** An attribute's value: string_value as a string, int_value as a bigint, double_value as a number. */
export type Value = string | bigint | number | boolean;

export interface ReceivedRecord {
  timeUnixNano: bigint;
  observedTimeUnixNano: bigint;
  severityNumber: number;
  severityText: string;
  /** body.string_value */
  body: string | null;
  attributes: Record<string, Value>;
  /** the attribute keys in the order they came */
  keys: string[];
  /** what else the record carries, all of which the agent leaves empty */
  droppedAttributesCount: number;
  flags: number;
  traceId: string;
  spanId: string;
  /** the request's resource and scope */
  resource: Record<string, Value>;
  scope: { name: string; version: string };
}

export interface ReceivedRequest {
  /** when it arrived (Date.now()) */
  at: number;
  headers: Headers;
  /** the status it was answered with */
  status: number;
  records: ReceivedRecord[];
}

export interface Answer {
  status: number;
  headers?: Record<string, string>;
  /** wait this long before answering */
  delayMs?: number;
}

function value(v: AnyValueObject | undefined, where: string): Value {
  if (v === undefined) throw new Error(`${where}: no value`);
  if (v.stringValue !== undefined) return v.stringValue;
  if (v.intValue !== undefined) return BigInt(v.intValue);
  if (v.doubleValue !== undefined) return v.doubleValue;
  if (v.boolValue !== undefined) return v.boolValue;
  throw new Error(`${where}: a value of a kind the agent never sends: ${JSON.stringify(v)}`);
}

function attributes(list: KeyValueObject[], where: string): Record<string, Value> {
  const out: Record<string, Value> = {};
  for (const kv of list) {
    if (kv.key in out) throw new Error(`${where}: attribute ${kv.key} twice`);
    out[kv.key] = value(kv.value, `${where} ${kv.key}`);
  }
  return out;
}

/** An ExportLogsServiceRequest's bytes → its records, with the official definitions. Throws on anything malformed. */
export function decodeLogsRequest(bytes: Uint8Array): ReceivedRecord[] {
  const message = ExportLogsServiceRequest.decode(bytes);
  const request = ExportLogsServiceRequest.toObject(message, { longs: String, bytes: String, defaults: true }) as RequestObject;
  const records: ReceivedRecord[] = [];
  for (const resourceLogs of request.resourceLogs) {
    const resource = attributes(resourceLogs.resource?.attributes ?? [], "resource");
    for (const scopeLogs of resourceLogs.scopeLogs) {
      const scope = { name: scopeLogs.scope?.name ?? "", version: scopeLogs.scope?.version ?? "" };
      for (const r of scopeLogs.logRecords) {
        records.push({
          timeUnixNano: BigInt(r.timeUnixNano),
          observedTimeUnixNano: BigInt(r.observedTimeUnixNano),
          severityNumber: r.severityNumber,
          severityText: r.severityText,
          body: r.body?.stringValue ?? null,
          attributes: attributes(r.attributes, "log record"),
          keys: r.attributes.map((kv) => kv.key),
          droppedAttributesCount: r.droppedAttributesCount,
          flags: r.flags,
          traceId: r.traceId,
          spanId: r.spanId,
          resource,
          scope,
        });
      }
    }
  }
  return records;
}

export interface ReceiverOptions {
  /** serve HTTPS with a certificate for 127.0.0.1 signed by a CA made now (`caFile`) */
  tls?: boolean;
  /** listen on this port (to come back where a stopped receiver was) */
  port?: number;
}

export class OtlpReceiver extends LocalServer {
  /** every request, however it was answered */
  readonly requests: ReceivedRequest[] = [];
  /** the records of requests answered 2xx, in arrival order */
  readonly records: ReceivedRecord[] = [];
  /** requests that were not a gzipped OTLP logs request (each with why) */
  readonly malformed: string[] = [];
  /** requests being answered now, and the most there ever were at once */
  inFlight = 0;
  maxInFlight = 0;
  /** How the next request is answered (after it was decoded); by default 200 at once. */
  answer: (request: ReceivedRequest) => Answer = () => ({ status: 200 });
  readonly #waiters = new Set<() => void>();

  constructor(options: ReceiverOptions) {
    // a slow answer may take longer than Bun's default idle time of 10 s
    super({ prefix: "otlp-receiver-", tls: options.tls === true, port: options.port, idleTimeout: 0 });
  }

  /** The base URL to give --otlp-endpoint (the agent adds /v1/logs). */
  get endpoint(): string {
    return this.origin;
  }

  protected async respond(request: Request): Promise<Response> {
    const why = (problem: string) => {
      this.malformed.push(problem);
      return new Response(`${problem}\n`, { status: 400 });
    };
    if (request.method !== "POST" || new URL(request.url).pathname !== "/v1/logs") return why(`${request.method} ${new URL(request.url).pathname}`);
    if (request.headers.get("content-type") !== "application/x-protobuf") return why(`content-type ${request.headers.get("content-type")}`);
    if (request.headers.get("content-encoding") !== "gzip") return why(`content-encoding ${request.headers.get("content-encoding")}`);
    let records: ReceivedRecord[];
    try {
      records = decodeLogsRequest(gunzipSync(new Uint8Array(await request.arrayBuffer())));
    } catch (error) {
      return why(`undecodable: ${(error as Error).message}`);
    }
    const received: ReceivedRequest = { at: Date.now(), headers: request.headers, status: 0, records };
    const answer = this.answer(received);
    received.status = answer.status;
    this.requests.push(received);
    this.inFlight++;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    if (answer.delayMs) await Bun.sleep(answer.delayMs);
    this.inFlight--;
    if (answer.status >= 200 && answer.status < 300) this.records.push(...records);
    for (const wake of this.#waiters) wake();
    // An empty ExportLogsServiceResponse is an empty body.
    return new Response(new Uint8Array(0), { status: answer.status, headers: { "content-type": "application/x-protobuf", ...answer.headers } });
  }

  /** Resolves with the accepted records matching `predicate` once there are `count`; rejects after `timeoutMs`. */
  async waitForRecords(predicate: (r: ReceivedRecord) => boolean, count = 1, timeoutMs = 20_000): Promise<ReceivedRecord[]> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.records.filter(predicate);
      if (found.length >= count) return found;
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new Error(
          `timed out after ${timeoutMs} ms waiting for ${count} record(s), ${found.length} matched; ` +
            `${this.requests.length} requests (statuses ${[...new Set(this.requests.map((r) => r.status))].join(",")}), ${this.records.length} records accepted` +
            `${this.malformed.length ? `; malformed: ${this.malformed.join("; ")}` : ""}`,
        );
      }
      await new Promise<void>((resolve) => {
        const wake = () => {
          this.#waiters.delete(wake);
          clearTimeout(timer);
          resolve();
        };
        const timer = setTimeout(wake, Math.min(left, 200));
        this.#waiters.add(wake);
      });
    }
  }

}

/** A started receiver. */
export function startReceiver(options: ReceiverOptions = {}): Promise<OtlpReceiver> {
  return started(new OtlpReceiver(options));
}
