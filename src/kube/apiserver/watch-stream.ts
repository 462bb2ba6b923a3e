// A watch answer is a chunked stream of JSON objects, one per line:
//   {"type":"ADDED|MODIFIED|DELETED|BOOKMARK|ERROR","object":{...}}
// Chunks fall anywhere (inside an object, inside a UTF-8 sequence): LineSplitter joins them back
// into whole lines. parseWatchEvent turns one line into a value; it never throws.
import * as v from "valibot";
import { parseJson } from "../http.ts";
import { StatusSchema } from "./objects.ts";

/** The longest line accepted (one object); a longer one is a broken stream. */
export const MAX_LINE_BYTES = 16 << 20;

export class LineSplitter {
  readonly #decoder = new TextDecoder("utf-8");
  #partial = "";

  /** The whole lines completed by this chunk (without their newline); empty lines skipped. */
  push(chunk: Uint8Array): string[] {
    const text = this.#partial + this.#decoder.decode(chunk, { stream: true });
    const lines = text.split("\n");
    this.#partial = lines.pop() ?? "";
    if (this.#partial.length > MAX_LINE_BYTES) {
      this.#partial = "";
      throw new Error(`a watch event longer than ${MAX_LINE_BYTES >> 20} MiB`);
    }
    return lines.filter((line) => line.trim() !== "");
  }

  /** What is left when the stream ends: a last line without its newline, or "". */
  end(): string {
    const rest = (this.#partial + this.#decoder.decode()).trim();
    this.#partial = "";
    return rest;
  }
}

export type WatchEvent =
  | { type: "ADDED" | "MODIFIED" | "DELETED"; object: unknown }
  | { type: "BOOKMARK"; resourceVersion: string | null }
  /** code 410 (Expired / Gone): the resourceVersion is too old, list again */
  | { type: "EXPIRED"; message: string }
  | { type: "ERROR"; code: number | null; message: string }
  /** not an event at all */
  | { type: "INVALID"; problem: string };

const EnvelopeSchema = v.object({ type: v.string(), object: v.unknown() });
const BookmarkSchema = v.object({ metadata: v.nullish(v.object({ resourceVersion: v.nullish(v.string()) })) });

export function parseWatchEvent(line: string): WatchEvent {
  const parsed = parseJson(line);
  if (!parsed.ok) return { type: "INVALID", problem: `not JSON: ${parsed.message}` };
  const envelope = v.safeParse(EnvelopeSchema, parsed.json);
  if (!envelope.success) return { type: "INVALID", problem: "not a watch event (no type and object)" };
  const { type, object } = envelope.output;
  switch (type) {
    case "ADDED":
    case "MODIFIED":
    case "DELETED":
      if (typeof object !== "object" || object === null) return { type: "INVALID", problem: `${type} without an object` };
      return { type, object };
    case "BOOKMARK": {
      const bookmark = v.safeParse(BookmarkSchema, object);
      return { type: "BOOKMARK", resourceVersion: bookmark.success ? (bookmark.output.metadata?.resourceVersion ?? null) : null };
    }
    case "ERROR": {
      const status = v.safeParse(StatusSchema, object);
      const code = status.success ? (status.output.code ?? null) : null;
      const message = status.success ? (status.output.message ?? status.output.reason ?? "") : "";
      if (code === 410 || (status.success && (status.output.reason === "Expired" || status.output.reason === "Gone"))) {
        return { type: "EXPIRED", message };
      }
      return { type: "ERROR", code, message };
    }
    default:
      return { type: "INVALID", problem: `unknown event type ${JSON.stringify(type).slice(0, 40)}` };
  }
}
