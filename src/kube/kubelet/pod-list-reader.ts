// The kubelet's pod list, read as it arrives (docs/kubernetes.md, "The list"): a byte scanner
// follows the document's outer structure (the top-level object and its `items` array) and hands
// each pod's bytes, once complete, to the schema through json-pick.ts, so that memory holds the
// unread bytes and one pod, never the list's object graph. The verdict is the one checkPodList
// gives for the whole document (same messages). Work is done in slices (`work(deadline)`).
//
// A pod whose bytes are exactly those of a pod in the last good list is not read again: what the
// index took of it is in KnownPods. Decoding every pod again each refresh was most of the garbage a
// refresh left (README, "Footprint").
import * as v from "valibot";
import {
  BACKSLASH,
  CLOSE_BRACE,
  CLOSE_BRACKET,
  COLON,
  COMMA,
  isSpace,
  NotJson,
  OPEN_BRACE,
  OPEN_BRACKET,
  pick,
  QUOTE,
  selectionOf,
} from "./json-pick.ts";
import { type Pod, PodSchema } from "../pod.ts";
import { type IndexedPod, indexedPod } from "./pod-index.ts";
import { checkPodList, describeItemProblem, parsePodList, type PodListResult } from "./pod-list.ts";

/** What is read of each pod: the fields PodSchema declares (json-pick.ts). */
const POD_SELECTION = selectionOf(PodSchema);

/**
 * The pods of the last good list as the index takes them (IndexedPod), by a 64-bit hash of their
 * bytes (wyhash, seeded at random per process, so that nobody who writes a pod spec can make it
 * collide with another pod's). A reader given KnownPods hands its pods here, not to its result.
 *
 * The pods read (not known) are copied once the whole list has been read, in one go: read pod by
 * pod, they lie among the reading's garbage, and the engine hands a heap block back only once all
 * of it is free (README, "Footprint").
 */
export class KnownPods {
  readonly #seed = crypto.getRandomValues(new BigUint64Array(1))[0]!;
  #known = new Map<bigint, IndexedPod>();
  /** the pods of the list being read */
  #seen = new Map<bigint, IndexedPod>();
  /** the hashes of the list being read, in its order; of the last good list */
  #order: bigint[] = [];
  #lastOrder: bigint[] = [];
  /** the hashes of the pods read (not known) in the list being read */
  #fresh: bigint[] = [];
  #hash = 0n;

  /** The pod whose bytes were exactly bytes[start, end) in the last good list (it is in this list too). */
  find(bytes: Uint8Array, start: number, end: number): IndexedPod | undefined {
    this.#hash = BigInt(Bun.hash.wyhash(bytes.subarray(start, end), this.#seed));
    const pod = this.#known.get(this.#hash);
    if (pod !== undefined) {
      this.#seen.set(this.#hash, pod);
      this.#order.push(this.#hash);
    }
    return pod;
  }

  /** The pod whose bytes find() was given last, checked. */
  add(pod: Pod): void {
    this.#seen.set(this.#hash, indexedPod(pod));
    this.#order.push(this.#hash);
    this.#fresh.push(this.#hash);
  }

  /** The list's `items` start again (a second `items` member: the last one counts), or it has been read. */
  restart(): void {
    this.#seen.clear();
    this.#order.length = 0;
    this.#fresh.length = 0;
  }

  /** The list has been read: when it was good, its pods are the known ones from now on. */
  settle(good: boolean): void {
    if (good) {
      for (const hash of this.#fresh) this.#seen.set(hash, structuredClone(this.#seen.get(hash)!));
      [this.#known, this.#seen] = [this.#seen, this.#known];
      [this.#lastOrder, this.#order] = [this.#order, []];
    }
    this.restart();
  }

  /** The last good list's pods, in its order (the copies, for the index). */
  pods(): IndexedPod[] {
    return this.#lastOrder.map((hash) => this.#known.get(hash)!);
  }
}

/** Where the reader is in the document. */
const enum Phase {
  /** before the top-level value */
  Start,
  /** the document is not an object: every byte is kept for checkPodList */
  Whole,
  /** after `{`: a key or `}` */
  FirstKey,
  /** after `,` in the top-level object: a key */
  Key,
  Colon,
  /** a top-level member's value */
  Value,
  /** after a top-level member: `,` or `}` */
  AfterValue,
  /** after `[` of items: an element or `]` */
  FirstItem,
  /** after `,` in items: an element */
  Item,
  /** after an element: `,` or `]` */
  AfterItem,
  /** after the top-level `}`: only whitespace */
  End,
  Failed,
}

/** How far a value that starts at `start` extends; resumable across chunks. */
interface ValueScan {
  start: number;
  /** next byte to look at */
  at: number;
  depth: number;
  inString: boolean;
  escaped: boolean;
}

export class PodListReader {
  #buffer = new Uint8Array(64 * 1024);
  /** bytes in #buffer */
  #length = 0;
  /** next unread byte */
  #at = 0;
  /** bytes consumed before #buffer[0], for messages */
  #consumed = 0;
  #phase = Phase.Start;
  #ended = false;
  #problem: string | null = null;
  #key = "";
  #scan: ValueScan | null = null;
  /** the top-level members other than a streamed `items`, parsed */
  readonly #members: Record<string, unknown> = {};
  #itemsStreamed = false;
  #itemCount = 0;
  /** the pods read, when there is no KnownPods to hand them to */
  readonly #pods: Pod[] = [];
  #firstBadItem = "";
  #badItems = 0;
  readonly #decoder = new TextDecoder();
  readonly #knownPods: KnownPods | null;

  constructor(knownPods: KnownPods | null = null) {
    this.#knownPods = knownPods;
  }

  /** Appends the next bytes of the answer (nothing is read until work() runs). */
  push(chunk: Uint8Array): void {
    if (this.#phase === Phase.Failed) return;
    if (this.#at > 0) {
      // Drop what has been read (what is left is at most the pod being read).
      this.#buffer.copyWithin(0, this.#at, this.#length);
      this.#consumed += this.#at;
      this.#length -= this.#at;
      if (this.#scan !== null) {
        this.#scan.start -= this.#at;
        this.#scan.at -= this.#at;
      }
      this.#at = 0;
    }
    if (this.#length + chunk.byteLength > this.#buffer.byteLength) {
      const grown = new Uint8Array(Math.max(this.#buffer.byteLength * 2, this.#length + chunk.byteLength));
      grown.set(this.#buffer.subarray(0, this.#length));
      this.#buffer = grown;
    }
    this.#buffer.set(chunk, this.#length);
    this.#length += chunk.byteLength;
  }

  /** Bytes received and not read yet: after work(), at most the pod being read. */
  get unreadBytes(): number {
    return this.#length - this.#at;
  }

  /** No more bytes will come. */
  end(): void {
    this.#ended = true;
  }

  /**
   * Reads what has arrived until `deadline` (performance.now() ms) passes. True when everything
   * that has arrived is read (or the document has failed), false when time ran out first.
   */
  work(deadline = Number.POSITIVE_INFINITY): boolean {
    let steps = 0;
    while (this.#phase !== Phase.Failed && this.#step()) {
      if (++steps % 16 === 0 && performance.now() > deadline) return false;
    }
    return true;
  }

  /**
   * The verdict, once end() was called and work() has read everything. With KnownPods, a good
   * list's pods are there (KnownPods.pods() once settled) and `pods` is empty.
   */
  result(): PodListResult {
    if (this.#problem !== null) return { ok: false, problem: this.#problem };
    if (this.#phase === Phase.Whole) {
      // Not an object: the whole-text check gives its message.
      return parsePodList(this.#decoder.decode(this.#buffer.subarray(0, this.#length)));
    }
    if (this.#phase !== Phase.End) {
      return { ok: false, problem: `not JSON: the answer ends inside the pod list (after ${this.#consumed + this.#length} bytes)` };
    }
    // The rest of the document, as checkPodList sees it; the items were checked one by one.
    const head = checkPodList({ ...this.#members, ...(this.#itemsStreamed ? { items: [] } : {}) });
    if (!head.ok) return head;
    if (this.#badItems > 0) {
      const more = this.#badItems === 1 ? "" : ` (and ${this.#badItems - 1} more pods)`;
      return { ok: false, problem: `${this.#firstBadItem}${more}` };
    }
    return { ok: true, pods: this.#itemsStreamed ? this.#pods : head.pods };
  }

  #fail(problem: string): false {
    this.#problem = problem;
    this.#phase = Phase.Failed;
    return false;
  }

  #unexpected(what: string): false {
    const byte = this.#buffer[this.#at];
    const found = byte === undefined ? "the end" : JSON.stringify(String.fromCharCode(byte));
    return this.#fail(`not JSON: ${found} where ${what} should be (byte ${this.#consumed + this.#at})`);
  }

  /** Skips whitespace; false when the buffer holds nothing more. */
  #skipSpace(): boolean {
    const buffer = this.#buffer;
    while (this.#at < this.#length && isSpace(buffer[this.#at]!)) this.#at++;
    return this.#at < this.#length;
  }

  /** One step of the outer structure; false when it must wait for more bytes (or failed). */
  #step(): boolean {
    switch (this.#phase) {
      case Phase.Start:
        if (!this.#skipSpace()) return this.#ended ? this.#fail("not JSON: the answer is empty") : false;
        if (this.#buffer[this.#at] === OPEN_BRACE) {
          this.#at++;
          this.#phase = Phase.FirstKey;
        } else {
          this.#phase = Phase.Whole;
        }
        return true;
      case Phase.Whole:
        return false;
      case Phase.FirstKey:
      case Phase.Key: {
        if (!this.#skipSpace()) return this.#endedEarly();
        const byte = this.#buffer[this.#at];
        if (byte === CLOSE_BRACE && this.#phase === Phase.FirstKey) {
          this.#at++;
          this.#phase = Phase.End;
          return true;
        }
        if (byte !== QUOTE) return this.#unexpected("a member name");
        const value = this.#value();
        if (value === undefined) return this.#endedEarly();
        if (typeof value !== "string") return false; // failed: #value said why
        this.#key = value;
        this.#phase = Phase.Colon;
        return true;
      }
      case Phase.Colon:
        if (!this.#skipSpace()) return this.#endedEarly();
        if (this.#buffer[this.#at] !== COLON) return this.#unexpected('":"');
        this.#at++;
        this.#phase = Phase.Value;
        return true;
      case Phase.Value: {
        if (!this.#skipSpace()) return this.#endedEarly();
        if (this.#key === "items") this.#forgetItems(); // of an earlier "items": the last one counts, as in JSON.parse
        if (this.#key === "items" && this.#buffer[this.#at] === OPEN_BRACKET) {
          this.#at++;
          this.#itemsStreamed = true;
          delete this.#members.items;
          this.#phase = Phase.FirstItem;
          return true;
        }
        const value = this.#value();
        if (value === undefined) return this.#endedEarly();
        if (value === FAILED) return false;
        this.#members[this.#key] = value;
        this.#phase = Phase.AfterValue;
        return true;
      }
      case Phase.AfterValue:
        return this.#separator(CLOSE_BRACE, Phase.Key, Phase.End);
      case Phase.FirstItem:
      case Phase.Item: {
        if (!this.#skipSpace()) return this.#endedEarly();
        if (this.#buffer[this.#at] === CLOSE_BRACKET && this.#phase === Phase.FirstItem) {
          this.#at++;
          this.#phase = Phase.AfterValue;
          return true;
        }
        const item = this.#value(true);
        if (item === undefined) return this.#endedEarly();
        if (item === FAILED) return false;
        this.#checkItem(item);
        this.#phase = Phase.AfterItem;
        return true;
      }
      case Phase.AfterItem:
        return this.#separator(CLOSE_BRACKET, Phase.Item, Phase.AfterValue);
      case Phase.End:
        if (!this.#skipSpace()) return false;
        return this.#unexpected("the end of the answer");
      case Phase.Failed:
        return false;
    }
  }

  /** After a member or an element: "," goes on to `next`, `close` ends the object or array. */
  #separator(close: number, next: Phase, closed: Phase): boolean {
    if (!this.#skipSpace()) return this.#endedEarly();
    const byte = this.#buffer[this.#at];
    if (byte !== COMMA && byte !== close) return this.#unexpected(`"," or "${String.fromCharCode(close)}"`);
    this.#at++;
    this.#phase = byte === COMMA ? next : closed;
    return true;
  }

  /** Out of bytes in the middle of the document: wait for more, or fail at the end. */
  #endedEarly(): false {
    return this.#ended ? this.#fail(`not JSON: the answer ends inside the pod list (after ${this.#consumed + this.#length} bytes)`) : false;
  }

  /**
   * The complete JSON value at #at, parsed; undefined when its end has not arrived yet, FAILED
   * when it is not JSON (the problem is set).
   */
  #value(isPod = false): unknown {
    const buffer = this.#buffer;
    const scan = (this.#scan ??= { start: this.#at, at: this.#at, depth: 0, inString: false, escaped: false });
    const first = buffer[scan.start]!;
    const scalar = first !== OPEN_BRACE && first !== OPEN_BRACKET && first !== QUOTE;
    let { at, depth, inString, escaped } = scan;
    let end = -1;
    for (; at < this.#length; at++) {
      const byte = buffer[at]!;
      if (inString) {
        if (escaped) escaped = false;
        else if (byte === BACKSLASH) escaped = true;
        else if (byte === QUOTE) {
          inString = false;
          if (depth === 0) {
            end = at + 1;
            break;
          }
        }
      } else if (scalar) {
        if (byte === COMMA || byte === CLOSE_BRACE || byte === CLOSE_BRACKET || isSpace(byte)) {
          end = at;
          break;
        }
      } else if (byte === QUOTE) {
        inString = true;
      } else if (byte === OPEN_BRACE || byte === OPEN_BRACKET) {
        depth++;
      } else if (byte === CLOSE_BRACE || byte === CLOSE_BRACKET) {
        if (--depth === 0) {
          end = at + 1;
          break;
        }
      }
    }
    if (end < 0) {
      Object.assign(scan, { at, depth, inString, escaped });
      return undefined;
    }
    this.#scan = null;
    this.#at = end;
    try {
      if (isPod) {
        const known = this.#knownPods?.find(buffer, scan.start, end);
        return known === undefined ? pick(buffer, scan.start, end, POD_SELECTION) : KNOWN;
      }
      return JSON.parse(this.#decoder.decode(buffer.subarray(scan.start, end)));
    } catch (error) {
      const at = error instanceof NotJson ? error.at : scan.start;
      this.#fail(`not JSON: ${(error as Error).message} (at byte ${this.#consumed + at})`);
      return FAILED;
    }
  }

  #forgetItems(): void {
    this.#knownPods?.restart();
    this.#itemsStreamed = false;
    this.#itemCount = 0;
    this.#pods.length = 0;
    this.#badItems = 0;
    this.#firstBadItem = "";
  }

  #checkItem(item: unknown): void {
    const index = this.#itemCount++;
    if (item === KNOWN) return;
    const pod = v.safeParse(PodSchema, item);
    if (pod.success) {
      if (this.#knownPods !== null) this.#knownPods.add(pod.output);
      else if (this.#badItems === 0) this.#pods.push(pod.output);
      return;
    }
    if (++this.#badItems === 1) this.#firstBadItem = describeItemProblem(index, item, pod.issues[0]);
    this.#pods.length = 0; // the list is refused: no need to keep what it had
  }
}

/** What #value returns for a pod KnownPods found (never a value JSON.parse makes). */
const KNOWN: unique symbol = Symbol("known pod");

/** What #value returns for a value that is not JSON. */
const FAILED: unique symbol = Symbol("not JSON");
