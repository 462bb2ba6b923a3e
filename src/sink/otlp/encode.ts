// Reports → the protobuf bytes of one OTLP ExportLogsServiceRequest, written by hand after the
// official definitions (opentelemetry-proto's collector/logs/v1/logs_service.proto and what it
// imports): one ResourceLogs (the agent), one ScopeLogs, one LogRecord per report, each written
// straight into the request's buffer as it comes. Why our own encoder: README, "OTLP export".
// The tests decode what this writes with the official definitions, never with this.
//
// A field is a tag (field number << 3 | wire type) and its value; LEN fields (messages, strings)
// are a varint length and the bytes. Every tag used here is below 128, one byte. A message's
// length is known only once it is written: two bytes are kept for it (lengths 128..16383, what a
// LogRecord and its body are), and the message is moved by a byte or two in the rare case its
// length needs another size.
import type { AccessRecord, KmeshText } from "../../accesslog/format.ts";
import type { WallTime } from "../../kernel/clock.ts";
import type { AttributeSpec } from "./attributes.ts";

const LEN = 2;
const I64 = 1;
const VARINT = 0;
const tag = (field: number, wireType: number) => (field << 3) | wireType;

// ExportLogsServiceRequest.resource_logs = 1; ResourceLogs.resource = 1, .scope_logs = 2;
// Resource.attributes = 1; ScopeLogs.scope = 1, .log_records = 2; InstrumentationScope.name = 1,
// .version = 2.
const REQUEST_RESOURCE_LOGS = tag(1, LEN);
const RESOURCE_LOGS_RESOURCE = tag(1, LEN);
const RESOURCE_LOGS_SCOPE_LOGS = tag(2, LEN);
const RESOURCE_ATTRIBUTES = tag(1, LEN);
const SCOPE_LOGS_SCOPE = tag(1, LEN);
const SCOPE_LOGS_LOG_RECORD = tag(2, LEN);
const SCOPE_NAME = tag(1, LEN);
const SCOPE_VERSION = tag(2, LEN);
// LogRecord: time_unix_nano = 1 (fixed64), observed_time_unix_nano = 11 (fixed64),
// severity_number = 2, severity_text = 3, body = 5 (AnyValue), attributes = 6 (KeyValue).
const LOG_TIME = tag(1, I64);
const LOG_OBSERVED_TIME = tag(11, I64);
const LOG_SEVERITY_NUMBER = tag(2, VARINT);
const LOG_SEVERITY_TEXT = tag(3, LEN);
const LOG_BODY = tag(5, LEN);
const LOG_ATTRIBUTE = tag(6, LEN);
// KeyValue: key = 1, value = 2 (AnyValue); AnyValue: string_value = 1, int_value = 3, double_value = 4.
const KEY_VALUE_KEY = tag(1, LEN);
const KEY_VALUE_VALUE = tag(2, LEN);
const ANY_STRING = tag(1, LEN);
const ANY_INT = tag(3, VARINT);
const ANY_DOUBLE = tag(4, I64);
/** SeverityNumber SEVERITY_NUMBER_INFO: every report is an ordinary event. */
const SEVERITY_INFO = 9;

/** Bytes kept for a length that is written once its message is (two: up to 16383). */
const LENGTH_ROOM = 2;
/** Room kept per report beyond the text line's bound: keys, numbers, times and tags. */
const RECORD_FIXED_BYTES = 2048;
const FIRST_BUFFER_BYTES = 256 << 10;

const utf8 = new TextEncoder();

/** Bytes of the varint of n (0 <= n < 2^53). */
function varintSize(n: number): number {
  let size = 1;
  while (n >= 128) {
    n = Math.floor(n / 128);
    size++;
  }
  return size;
}

/** A string's UTF-8 bytes, or null when every character is ASCII (the common case: written as is). */
function nonAscii(text: string): Uint8Array | null {
  for (let i = 0; i < text.length; i++) if (text.charCodeAt(i) >= 0x80) return utf8.encode(text);
  return null;
}

/** Builds small messages once (the resource, the scope, each key): bytes pushed, lengths prefixed. */
class Bytes {
  readonly #bytes: number[] = [];
  varint(n: number): this {
    while (n >= 128) {
      this.#bytes.push((n % 128) | 128);
      n = Math.floor(n / 128);
    }
    this.#bytes.push(n);
    return this;
  }
  raw(bytes: ArrayLike<number>): this {
    for (let i = 0; i < bytes.length; i++) this.#bytes.push(bytes[i]!);
    return this;
  }
  /** A LEN field: tag, length, bytes. */
  field(fieldTag: number, bytes: ArrayLike<number>): this {
    return this.raw([fieldTag]).varint(bytes.length).raw(bytes);
  }
  string(fieldTag: number, text: string): this {
    return this.field(fieldTag, utf8.encode(text));
  }
  done(): Uint8Array {
    return Uint8Array.from(this.#bytes);
  }
}

/** A KeyValue with a string value, as a message's bytes. */
const stringKeyValue = (key: string, value: string) =>
  new Bytes().string(KEY_VALUE_KEY, key).field(KEY_VALUE_VALUE, new Bytes().string(ANY_STRING, value).done()).done();

export interface Scope {
  name: string;
  version: string;
}

/**
 * One request's bytes, a report at a time. add() writes a LogRecord; finish() returns the request
 * and starts the next one in a new buffer (the returned bytes are the caller's).
 */
export class LogsRequestWriter {
  readonly #text: KmeshText;
  readonly #attributes: readonly AttributeSpec[];
  /** Each attribute's KeyValue.key field: tag, length, key. */
  readonly #keys: Uint8Array[];
  /** ResourceLogs.resource and ScopeLogs.scope, fields and all: the same in every request. */
  readonly #resourceField: Uint8Array;
  readonly #scopeField: Uint8Array;
  readonly #severity: Uint8Array;
  /** Room at the start of the buffer for what comes before the LogRecords. */
  readonly #headroom: number;
  #out: Uint8Array;
  #view: DataView;
  #pos: number;
  #count = 0;

  /**
   * `text` writes the body (the report's text line), `resource` the agent's resource attributes,
   * `attributes` the table of what each LogRecord carries (attributes.ts).
   */
  constructor(text: KmeshText, resource: readonly [string, string][], scope: Scope, attributes: readonly AttributeSpec[]) {
    this.#text = text;
    this.#attributes = attributes;
    this.#keys = attributes.map((a) => new Bytes().string(KEY_VALUE_KEY, a.key).done());
    const resourceMessage = new Bytes();
    for (const [key, value] of resource) resourceMessage.field(RESOURCE_ATTRIBUTES, stringKeyValue(key, value));
    this.#resourceField = new Bytes().field(RESOURCE_LOGS_RESOURCE, resourceMessage.done()).done();
    const scopeMessage = new Bytes().string(SCOPE_NAME, scope.name).string(SCOPE_VERSION, scope.version).done();
    this.#scopeField = new Bytes().field(SCOPE_LOGS_SCOPE, scopeMessage).done();
    this.#severity = new Bytes().raw([LOG_SEVERITY_NUMBER]).varint(SEVERITY_INFO).string(LOG_SEVERITY_TEXT, "INFO").done();
    // The request's tag and two lengths (at most 10 bytes each) come with the two fields.
    this.#headroom = this.#resourceField.length + this.#scopeField.length + 32;
    this.#out = new Uint8Array(FIRST_BUFFER_BYTES);
    this.#view = new DataView(this.#out.buffer);
    this.#pos = this.#headroom;
  }

  /** Reports written since the last finish(). */
  get count(): number {
    return this.#count;
  }

  /** Bytes written since the last finish(). */
  get bytes(): number {
    return this.#pos - this.#headroom;
  }

  /** Appends the LogRecord of `r`, observed (read by the agent) at `observed`. */
  add(r: AccessRecord, observed: WallTime): void {
    this.#reserve(2 * this.#text.maxBytes(r) + RECORD_FIXED_BYTES);
    const out = this.#out;
    let p = this.#pos;
    out[p] = SCOPE_LOGS_LOG_RECORD;
    const recordStart = p + 1 + LENGTH_ROOM;
    p = recordStart;
    out[p] = LOG_TIME;
    p = this.#nanos(r.reportTime, p + 1);
    out[p] = LOG_OBSERVED_TIME;
    p = this.#nanos(observed, p + 1);
    out.set(this.#severity, p);
    p += this.#severity.length;
    // body: AnyValue { string_value: the text line }
    out[p] = LOG_BODY;
    const bodyStart = p + 1 + LENGTH_ROOM;
    out[bodyStart] = ANY_STRING;
    const lineStart = bodyStart + 1 + LENGTH_ROOM;
    this.#pos = this.#text.write(r, out, lineStart);
    this.#closeLength(lineStart);
    this.#closeLength(bodyStart);
    const attributes = this.#attributes;
    for (let i = 0; i < attributes.length; i++) this.#attribute(attributes[i]!, this.#keys[i]!, r);
    this.#closeLength(recordStart);
    this.#count++;
  }

  /** The request's bytes (the caller's from now on); the next add() starts a new request. */
  finish(): Uint8Array {
    const records = this.#pos - this.#headroom;
    const scopeLogs = this.#scopeField.length + records;
    const resourceLogs = this.#resourceField.length + 1 + varintSize(scopeLogs) + scopeLogs;
    const head = new Bytes()
      .raw([REQUEST_RESOURCE_LOGS])
      .varint(resourceLogs)
      .raw(this.#resourceField)
      .raw([RESOURCE_LOGS_SCOPE_LOGS])
      .varint(scopeLogs)
      .raw(this.#scopeField)
      .done();
    const start = this.#headroom - head.length;
    this.#out.set(head, start);
    const request = this.#out.subarray(start, this.#pos);
    this.#out = new Uint8Array(Math.max(FIRST_BUFFER_BYTES, this.#out.length));
    this.#view = new DataView(this.#out.buffer);
    this.#pos = this.#headroom;
    this.#count = 0;
    return request;
  }

  /** Makes `room` bytes free after #pos. */
  #reserve(room: number): void {
    if (this.#pos + room <= this.#out.length) return;
    const bigger = new Uint8Array(Math.max(2 * this.#out.length, this.#pos + room));
    bigger.set(this.#out.subarray(0, this.#pos));
    this.#out = bigger;
    this.#view = new DataView(bigger.buffer);
  }

  /**
   * Writes the length of the message from `start` to #pos into the LENGTH_ROOM bytes before
   * `start`, moving the message when its length takes another number of bytes.
   */
  #closeLength(start: number): void {
    const length = this.#pos - start;
    const size = varintSize(length);
    if (size !== LENGTH_ROOM) {
      this.#out.copyWithin(start - LENGTH_ROOM + size, start, this.#pos);
      this.#pos += size - LENGTH_ROOM;
    }
    this.#varint(length, start - LENGTH_ROOM);
  }

  #varint(n: number, at: number): number {
    const out = this.#out;
    while (n >= 128) {
      out[at++] = (n % 128) | 128;
      n = Math.floor(n / 128);
    }
    out[at] = n;
    return at + 1;
  }

  /**
   * A time as fixed64 nanoseconds since the epoch, little-endian, computed exactly without BigInt:
   * sec * 1e9 + nsec is split at 2^16 seconds so that every partial product stays below 2^53.
   */
  #nanos(t: WallTime, at: number): number {
    const low16 = t.sec % 65_536;
    const high = (t.sec - low16) / 65_536; // < 2^18 until the year 10889
    const a = low16 * 1e9 + t.nsec; // < 6.6e13
    const b = high * 1e9; // < 2.7e14: the total is b * 2^16 + a
    const lowSum = (b % 65_536) * 65_536 + a;
    const low32 = lowSum % 4_294_967_296;
    const high32 = Math.floor(b / 65_536) + Math.floor(lowSum / 4_294_967_296);
    this.#view.setUint32(at, low32, true);
    this.#view.setUint32(at + 4, high32, true);
    return at + 8;
  }

  /**
   * The start of a KeyValue in LogRecord.attributes whose AnyValue takes `any` bytes: the field's
   * tag and length, the key, the value's tag and length; returns where the AnyValue goes.
   */
  #keyValue(key: Uint8Array, any: number): number {
    const out = this.#out;
    out[this.#pos] = LOG_ATTRIBUTE;
    const p = this.#varint(key.length + 1 + varintSize(any) + any, this.#pos + 1);
    out.set(key, p);
    out[p + key.length] = KEY_VALUE_VALUE;
    return this.#varint(any, p + key.length + 1);
  }

  /** One KeyValue in LogRecord.attributes, or nothing when the value is not known. */
  #attribute(spec: AttributeSpec, key: Uint8Array, r: AccessRecord): void {
    const out = this.#out;
    switch (spec.kind) {
      case "string": {
        const value = spec.value(r);
        if (value === null) return;
        const encoded = nonAscii(value);
        const length = encoded === null ? value.length : encoded.length;
        let p = this.#keyValue(key, 1 + varintSize(length) + length);
        out[p] = ANY_STRING;
        p = this.#varint(length, p + 1);
        if (encoded !== null) out.set(encoded, p);
        else for (let i = 0; i < length; i++) out[p + i] = value.charCodeAt(i);
        this.#pos = p + length;
        return;
      }
      case "int": {
        const value = spec.value(r);
        if (value === null) return;
        const p = this.#keyValue(key, 1 + varintSize(value));
        out[p] = ANY_INT;
        this.#pos = this.#varint(value, p + 1);
        return;
      }
      case "double": {
        const value = spec.value(r);
        if (value === null) return;
        const p = this.#keyValue(key, 9);
        out[p] = ANY_DOUBLE;
        this.#view.setFloat64(p + 1, value, true);
        this.#pos = p + 9;
        return;
      }
      case "time": {
        const value = spec.value(r);
        if (value === null) return;
        // The text is at most 48 bytes: every length here is one byte.
        const p = this.#pos;
        out[p] = LOG_ATTRIBUTE;
        const keyAt = p + 2;
        out.set(key, keyAt);
        const textAt = keyAt + key.length + 4;
        const end = this.#text.rfc3339(value, out, textAt);
        const length = end - textAt;
        out[p + 1] = key.length + 4 + length;
        out[keyAt + key.length] = KEY_VALUE_VALUE;
        out[keyAt + key.length + 1] = 2 + length;
        out[keyAt + key.length + 2] = ANY_STRING;
        out[keyAt + key.length + 3] = length;
        this.#pos = end;
        return;
      }
    }
  }
}
