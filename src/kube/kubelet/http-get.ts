// One HTTP/1.1 GET on a connection of our own (Bun.connect, TLS or not), its answer's body handed
// over chunk by chunk as it arrives: the kubelet's pod list. Our own rather than fetch() for
// memory (docs/kubernetes.md, "The kubelet"; README, "Footprint"). The socket is read at most
// READ_AHEAD_BYTES ahead of the caller; beyond that the kubelet's bytes wait in the kernel.
//
// What it speaks: `Connection: close`, no compression asked for; a body framed by Content-Length,
// chunked, or by the end of the connection. Anything else in the answer's head, a malformed head
// or chunk, is a NotHttp error naming what was wrong.
import * as v from "valibot";

/** The answer's head is not HTTP/1.x as this reader speaks it (one line, for messages). */
export class NotHttp extends Error {}

/** The connection broke or closed inside the answer; `code` as the system's errors have one. */
export class Broken extends Error {
  readonly code = "ECONNRESET";
}

export interface GetOptions {
  /** request headers besides Host and Connection */
  headers: Record<string, string>;
  /** present: https; `serverName` is the URL's host */
  tls?: { ca?: string; rejectUnauthorized: boolean };
  /** aborts the request (its reason is what every waiting call then rejects with) */
  signal: AbortSignal;
}

/** The longest head we read (status line and headers). */
const MAX_HEAD_BYTES = 64 * 1024;
/**
 * How much of the body is read ahead of the caller: enough that the kubelet keeps sending while
 * the caller reads (stopping at every chunk made a 12 MB list over TLS outlast a 1 s timeout on
 * a busy machine), little enough that the list does not pile up here.
 */
const READ_AHEAD_BYTES = 1 << 20;
/** The longest chunk-size or trailer line. */
const MAX_LINE_BYTES = 4096;

const CR = 0x0d;
const LF = 0x0a;

/** The head's facts that this reader depends on, as the server sent them (lower-case names). */
const HeadSchema = v.object({
  statusLine: v.pipe(v.string(), v.regex(/^HTTP\/1\.[01] \d{3}(?: [^\r\n]*)?$/, "the status line is not HTTP/1.x")),
  "content-length": v.optional(v.pipe(v.string(), v.regex(/^\d{1,15}$/, "Content-Length is not one number"))),
  "transfer-encoding": v.optional(v.picklist(["chunked", "identity"], "a Transfer-Encoding other than chunked")),
  "content-encoding": v.optional(v.picklist(["identity"], "a compressed body (none was asked for)")),
});

/** How the body's end is known. */
type Framing = { kind: "length"; left: number } | { kind: "chunked" } | { kind: "close" };

const enum Chunked {
  Size,
  Data,
  DataEnd,
  Trailer,
}

export class HttpAnswer {
  status = 0;
  statusText = "";
  /** lower-case names; repeated headers joined with ", " */
  readonly headers = new Map<string, string>();

  readonly #signal: AbortSignal;
  #socket: Bun.Socket<undefined> | null = null;
  #request: Uint8Array;
  #head: Uint8Array | null = new Uint8Array(0);
  #framing: Framing = { kind: "close" };
  #chunked = Chunked.Size;
  #chunkLeft = 0;
  #line = "";
  /** body bytes that arrived and were not handed over yet */
  readonly #queue: Uint8Array[] = [];
  #queuedBytes = 0;
  #ended = false;
  #error: unknown = null;
  #paused = false;
  #wake: (() => void) | null = null;

  private constructor(request: Uint8Array, signal: AbortSignal) {
    this.#request = request;
    this.#signal = signal;
  }

  /** Sends the request; resolves once the answer's head is in, rejects when it never comes. */
  static async get(url: URL, options: GetOptions): Promise<HttpAnswer> {
    const hostname = url.hostname.replace(/^\[(.*)\]$/, "$1");
    const port = Number(url.port || (url.protocol === "https:" ? 443 : 80));
    const lines = [`GET ${url.pathname}${url.search} HTTP/1.1`, `Host: ${url.host}`, "Connection: close"];
    for (const [name, value] of Object.entries(options.headers)) lines.push(`${name}: ${value}`);
    const answer = new HttpAnswer(new TextEncoder().encode(`${lines.join("\r\n")}\r\n\r\n`), options.signal);
    try {
      options.signal.throwIfAborted();
      options.signal.addEventListener("abort", answer.#abort);
      const tls = options.tls === undefined ? undefined : { ...options.tls, serverName: hostname };
      answer.#socket = await Bun.connect({ hostname, port, tls, socket: answer.#handlers(tls) }).catch((error: unknown) => {
        throw answer.#error ?? error;
      });
      if (answer.#error !== null) answer.#socket.terminate();
      await answer.#until(() => answer.#head === null);
      return answer;
    } catch (error) {
      answer.close();
      throw error;
    }
  }

  readonly #abort = () => this.#fail(this.#signal.reason);

  #handlers(tls: { rejectUnauthorized: boolean } | undefined): Bun.SocketHandler<undefined> {
    return {
      open: (socket) => {
        if (tls === undefined) this.#send(socket);
      },
      handshake: (socket, success, authorizationError) => {
        if (tls?.rejectUnauthorized !== false && (!success || authorizationError !== null)) {
          this.#fail(authorizationError ?? new Broken("the TLS handshake failed"));
          socket.terminate();
          return;
        }
        this.#send(socket);
      },
      drain: (socket) => this.#send(socket),
      data: (socket, chunk) => {
        try {
          this.#receive(chunk);
        } catch (error) {
          this.#fail(error);
          socket.terminate();
          return;
        }
        if (this.#queuedBytes >= READ_AHEAD_BYTES) this.#pause(true);
        this.#wakeUp();
      },
      end: () => this.#closed(),
      close: (_socket, error) => (error ? this.#fail(error) : this.#closed()),
      error: (_socket, error) => this.#fail(error),
      // In fetch()'s words, which the agent has always printed (its code stays the system's).
      connectError: (_socket, error) => this.#fail(Object.assign(new Error("Unable to connect. Is the computer able to access the url?"), { code: (error as { code?: unknown }).code })),
    };
  }

  #send(socket: Bun.Socket<undefined>): void {
    if (this.#request.byteLength === 0) return;
    const written = socket.write(this.#request);
    this.#request = this.#request.subarray(Math.max(0, written));
  }

  /** The next part of the body, or null at its end. */
  async next(): Promise<Uint8Array | null> {
    await this.#until(() => this.#queue.length > 0 || this.#ended);
    const chunk = this.#queue.shift() ?? null;
    if (chunk === null) this.close();
    else this.#queuedBytes -= chunk.byteLength;
    if (this.#queuedBytes < READ_AHEAD_BYTES) this.#pause(false);
    return chunk;
  }

  /** The whole body as text, of which at most `max` bytes are kept (for an error's message). */
  async text(max = 4096): Promise<string> {
    const kept: Uint8Array[] = [];
    let bytes = 0;
    for (let chunk = await this.next(); chunk !== null; chunk = await this.next()) {
      if (bytes < max) kept.push(chunk.subarray(0, max - bytes));
      bytes += chunk.byteLength;
    }
    return Buffer.concat(kept).toString("utf8");
  }

  /** Ends the connection (at once: nothing more is read). */
  close(): void {
    this.#signal.removeEventListener("abort", this.#abort);
    this.#ended = true;
    this.#socket?.terminate();
    this.#socket = null;
  }

  /** Waits, reading the socket, until `done()` holds; rejects with what went wrong first. */
  async #until(done: () => boolean): Promise<void> {
    for (;;) {
      if (this.#error !== null) throw this.#error;
      if (done()) return;
      this.#pause(false);
      await new Promise<void>((resolve) => {
        this.#wake = resolve;
      });
    }
  }

  #wakeUp(): void {
    const wake = this.#wake;
    this.#wake = null;
    wake?.();
  }

  #pause(pause: boolean): void {
    if (this.#paused === pause || this.#socket === null) return;
    this.#paused = pause;
    if (pause) this.#socket.pause();
    else this.#socket.resume();
  }

  #fail(error: unknown): void {
    if (this.#error === null && !(this.#ended && this.#head === null)) this.#error = error;
    this.#wakeUp();
  }

  /** The peer closed: the end of a body framed by the connection, else an answer broken off. */
  #closed(): void {
    if (this.#head === null && this.#framing.kind === "close") this.#ended = true;
    else if (!this.#ended) this.#fail(new Broken(this.#head === null ? "the connection closed inside the answer's body" : "the connection closed before an answer"));
    this.#wakeUp();
  }

  #receive(chunk: Uint8Array): void {
    if (this.#head !== null) {
      const head = new Uint8Array(this.#head.byteLength + chunk.byteLength);
      head.set(this.#head);
      head.set(chunk, this.#head.byteLength);
      const end = endOfHead(head, Math.max(0, this.#head.byteLength - 3));
      if (end < 0) {
        if (head.byteLength > MAX_HEAD_BYTES) throw new NotHttp(`no end of the head in its first ${MAX_HEAD_BYTES} bytes`);
        this.#head = head;
        return;
      }
      this.#readHead(new TextDecoder("latin1").decode(head.subarray(0, end)));
      this.#head = null;
      chunk = head.subarray(end + 4);
    }
    this.#body(chunk);
  }

  #readHead(text: string): void {
    const [statusLine = "", ...lines] = text.split("\r\n");
    for (const line of lines) {
      const colon = line.indexOf(":");
      if (colon <= 0) throw new NotHttp(`a header line without a name: ${JSON.stringify(line.slice(0, 80))}`);
      const name = line.slice(0, colon).trim().toLowerCase();
      const value = line.slice(colon + 1).trim();
      const before = this.headers.get(name);
      this.headers.set(name, before === undefined ? value : `${before}, ${value}`);
    }
    const head = v.safeParse(HeadSchema, { statusLine, ...Object.fromEntries(this.headers) });
    if (!head.success) {
      const [issue] = head.issues;
      const key = issue.path?.[0]?.key;
      throw new NotHttp(key === "statusLine" ? `${issue.message}: ${JSON.stringify(statusLine.slice(0, 80))}` : issue.message);
    }
    this.status = Number(statusLine.slice(9, 12));
    this.statusText = statusLine.slice(13);
    const length = head.output["content-length"];
    this.#framing =
      head.output["transfer-encoding"] === "chunked"
        ? { kind: "chunked" }
        : length !== undefined
          ? { kind: "length", left: Number(length) }
          : { kind: "close" };
    if (this.#framing.kind === "length" && this.#framing.left === 0) this.#ended = true;
  }

  /** Body bytes as they came: framing taken off, the rest queued (views on `chunk`, no copy). */
  #body(chunk: Uint8Array): void {
    const framing = this.#framing;
    if (this.#ended || chunk.byteLength === 0) return;
    if (framing.kind === "close") {
      this.#enqueue(chunk);
    } else if (framing.kind === "length") {
      const take = Math.min(framing.left, chunk.byteLength);
      this.#enqueue(chunk.subarray(0, take));
      framing.left -= take;
      if (framing.left === 0) this.#ended = true;
    } else {
      this.#unchunk(chunk);
    }
  }

  #enqueue(bytes: Uint8Array): void {
    this.#queue.push(bytes);
    this.#queuedBytes += bytes.byteLength;
  }

  #unchunk(chunk: Uint8Array): void {
    let at = 0;
    while (at < chunk.byteLength && !this.#ended) {
      if (this.#chunked === Chunked.Data) {
        const take = Math.min(this.#chunkLeft, chunk.byteLength - at);
        this.#enqueue(chunk.subarray(at, at + take));
        at += take;
        this.#chunkLeft -= take;
        if (this.#chunkLeft === 0) this.#chunked = Chunked.DataEnd;
        continue;
      }
      const lf = chunk.indexOf(LF, at);
      const end = lf < 0 ? chunk.byteLength : lf;
      if (this.#line.length + end - at > MAX_LINE_BYTES) throw new NotHttp("a chunk-size or trailer line too long");
      this.#line += String.fromCharCode(...chunk.subarray(at, end));
      at = end + 1;
      if (lf < 0) return;
      const line = this.#line.endsWith("\r") ? this.#line.slice(0, -1) : this.#line;
      this.#line = "";
      if (this.#chunked === Chunked.Size) {
        const size = /^([0-9A-Fa-f]{1,12})[ \t]*(?:;.*)?$/.exec(line);
        if (size === null) throw new NotHttp(`not a chunk size: ${JSON.stringify(line.slice(0, 80))}`);
        this.#chunkLeft = Number.parseInt(size[1]!, 16);
        this.#chunked = this.#chunkLeft === 0 ? Chunked.Trailer : Chunked.Data;
      } else if (this.#chunked === Chunked.DataEnd) {
        if (line !== "") throw new NotHttp("a chunk longer than its size");
        this.#chunked = Chunked.Size;
      } else if (line === "") {
        this.#ended = true;
      }
    }
  }
}

/** Where "\r\n\r\n" starts in `bytes` (looking from `from`), or -1. */
function endOfHead(bytes: Uint8Array, from: number): number {
  for (let i = bytes.indexOf(CR, from); i >= 0 && i + 3 < bytes.byteLength; i = bytes.indexOf(CR, i + 1)) {
    if (bytes[i + 1] === LF && bytes[i + 2] === CR && bytes[i + 3] === LF) return i;
  }
  return -1;
}
