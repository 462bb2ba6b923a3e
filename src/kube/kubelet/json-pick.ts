// Reads only part of a JSON value, straight from its bytes. A pod in the kubelet's list is ~6 KB of
// JSON of which the agent uses a few fields (pod-list.ts); parsing all of it for every pod, every
// refresh, makes megabytes of garbage that the process keeps as resident memory. Here the fields a
// valibot schema declares are taken (each leaf through JSON.parse), and everything else is stepped
// over without being decoded. The schema then sees exactly what it would see in the whole value,
// since its objects ignore unknown keys: same results, same messages.
//
// What is stepped over is checked for balanced brackets and closed strings only, not for every
// rule of JSON. Member names are matched byte for byte (a name written with \u escapes is not
// recognized; no kubelet writes its field names so).
import type * as v from "valibot";

/** Which parts of a value to take: all of it, some members of an object, or each array element. */
export type Selection = true | { readonly members: readonly Member[] } | { readonly each: Selection };

interface Member {
  readonly name: string;
  /** the name as it appears between the quotes */
  readonly bytes: Uint8Array;
  readonly selection: Selection;
}

export class NotJson extends Error {
  constructor(
    message: string,
    readonly at: number,
  ) {
    super(message);
  }
}

type AnySchema = v.GenericSchema & { type: string; entries?: Record<string, AnySchema>; wrapped?: AnySchema; item?: AnySchema; pipe?: AnySchema[] };

/** The selection a schema needs: the members its objects declare, each element of its arrays. */
export function selectionOf(schema: v.GenericSchema): Selection {
  const s = schema as AnySchema;
  switch (s.type) {
    case "nullish":
    case "nullable":
    case "optional":
      return selectionOf(s.wrapped!);
    case "object":
    case "loose_object": {
      const encoder = new TextEncoder();
      const members = Object.entries(s.entries!).map(([name, entry]) => ({ name, bytes: encoder.encode(name), selection: selectionOf(entry) }));
      return { members };
    }
    case "array":
      return { each: selectionOf(s.item!) };
    default:
      return true; // strings, numbers, records, pipes: the whole value
  }
}

/** The bytes of JSON's structure (pod-list-reader.ts reads with them too). */
export const OPEN_BRACE = 0x7b;
export const CLOSE_BRACE = 0x7d;
export const OPEN_BRACKET = 0x5b;
export const CLOSE_BRACKET = 0x5d;
export const QUOTE = 0x22;
export const BACKSLASH = 0x5c;
export const COLON = 0x3a;
export const COMMA = 0x2c;

export const isSpace = (b: number | undefined) => b === 0x20 || b === 0x0a || b === 0x0d || b === 0x09;

const decoder = new TextDecoder();

function skipSpace(bytes: Uint8Array, at: number, end: number): number {
  while (at < end && isSpace(bytes[at])) at++;
  return at;
}

/** Where the value that starts at `at` ends (exclusive); checks brackets pair up and strings close. */
export function valueEnd(bytes: Uint8Array, at: number, end: number): number {
  const first = bytes[at];
  if (first === QUOTE) {
    for (let i = at + 1; i < end; i++) {
      const b = bytes[i];
      if (b === BACKSLASH) i++;
      else if (b === QUOTE) return i + 1;
    }
    throw new NotJson("a string that does not end", at);
  }
  if (first !== OPEN_BRACE && first !== OPEN_BRACKET) {
    let i = at;
    while (i < end) {
      const b = bytes[i];
      if (b === COMMA || b === CLOSE_BRACE || b === CLOSE_BRACKET || isSpace(b)) break;
      i++;
    }
    if (i === at) throw new NotJson("a value is missing", at);
    return i;
  }
  const open: number[] = [];
  for (let i = at; i < end; i++) {
    const b = bytes[i];
    if (b === QUOTE) {
      for (i++; i < end && bytes[i] !== QUOTE; i++) if (bytes[i] === BACKSLASH) i++;
      if (i >= end) break;
    } else if (b === OPEN_BRACE || b === OPEN_BRACKET) {
      open.push(b);
    } else if (b === CLOSE_BRACE || b === CLOSE_BRACKET) {
      if (open.pop() !== (b === CLOSE_BRACE ? OPEN_BRACE : OPEN_BRACKET)) throw new NotJson(`a "${String.fromCharCode(b)}" that closes nothing`, i);
      if (open.length === 0) return i + 1;
    }
  }
  throw new NotJson("an object or array that does not end", at);
}

function parseSlice(bytes: Uint8Array, start: number, end: number): unknown {
  try {
    return JSON.parse(decoder.decode(bytes.subarray(start, end)));
  } catch (error) {
    throw new NotJson((error as Error).message, start);
  }
}

function sameBytes(bytes: Uint8Array, start: number, end: number, name: Uint8Array): boolean {
  if (end - start !== name.byteLength) return false;
  for (let i = 0; i < name.byteLength; i++) if (bytes[start + i] !== name[i]) return false;
  return true;
}

/**
 * The value in bytes[start, end) (one JSON value, surrounding whitespace allowed), reduced to
 * `selection`. A value that is not what the selection expects (an array where an object is
 * declared, say) is parsed whole, so that the schema reports it as it is.
 */
export function pick(bytes: Uint8Array, start: number, end: number, selection: Selection): unknown {
  start = skipSpace(bytes, start, end);
  while (end > start && isSpace(bytes[end - 1])) end--;
  const first = bytes[start];
  if (selection !== true && "members" in selection && first === OPEN_BRACE) return pickMembers(bytes, start, end, selection);
  if (selection !== true && "each" in selection && first === OPEN_BRACKET) return pickElements(bytes, start, end, selection.each);
  return parseSlice(bytes, start, end);
}

function pickMembers(bytes: Uint8Array, start: number, end: number, selection: Extract<Selection, { members: unknown }>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  let at = skipSpace(bytes, start + 1, end);
  if (bytes[at] === CLOSE_BRACE) return expectEnd(bytes, at + 1, end, out);
  for (;;) {
    if (bytes[at] !== QUOTE) throw new NotJson("a member name is missing", at);
    const nameEnd = valueEnd(bytes, at, end);
    let wanted: Member | undefined;
    for (const member of selection.members) {
      if (sameBytes(bytes, at + 1, nameEnd - 1, member.bytes)) wanted = member;
    }
    at = skipSpace(bytes, nameEnd, end);
    if (bytes[at] !== COLON) throw new NotJson('":" is missing', at);
    const valueStart = skipSpace(bytes, at + 1, end);
    const valueStop = valueEnd(bytes, valueStart, end);
    if (wanted !== undefined) out[wanted.name] = pick(bytes, valueStart, valueStop, wanted.selection);
    at = skipSpace(bytes, valueStop, end);
    if (bytes[at] === CLOSE_BRACE) return expectEnd(bytes, at + 1, end, out);
    if (bytes[at] !== COMMA) throw new NotJson('"," or "}" is missing', at);
    at = skipSpace(bytes, at + 1, end);
  }
}

function pickElements(bytes: Uint8Array, start: number, end: number, each: Selection): unknown[] {
  const out: unknown[] = [];
  let at = skipSpace(bytes, start + 1, end);
  if (bytes[at] === CLOSE_BRACKET) return expectEnd(bytes, at + 1, end, out);
  for (;;) {
    const stop = valueEnd(bytes, at, end);
    out.push(pick(bytes, at, stop, each));
    at = skipSpace(bytes, stop, end);
    if (bytes[at] === CLOSE_BRACKET) return expectEnd(bytes, at + 1, end, out);
    if (bytes[at] !== COMMA) throw new NotJson('"," or "]" is missing', at);
    at = skipSpace(bytes, at + 1, end);
  }
}

function expectEnd<T>(bytes: Uint8Array, at: number, end: number, value: T): T {
  if (skipSpace(bytes, at, end) !== end) throw new NotJson("something after the value", at);
  return value;
}
