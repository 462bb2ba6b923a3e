// The small parts of Go's standard library whose exact behaviour Kmesh's
// admin API exposes to its clients: strconv.ParseBool for `enable=`,
// url.ParseQuery + Values.Get for the query string, and http.Error for error
// bodies. Kept byte-exact so that answers match Kmesh's to the byte: a query
// value is bytes (Go does not require UTF-8), and so is the body that echoes it.
// URLSearchParams differs (it keeps pairs with a bad escape or a `;`, and
// decodes bytes as UTF-8): the tests show where.

/** strconv.ParseBool's spellings: exactly these twelve. */
const GO_TRUE = ["1", "t", "T", "TRUE", "true", "True"];
const GO_FALSE = ["0", "f", "F", "FALSE", "false", "False"];
/** The accepted spellings, for messages. */
export const GO_BOOL_SPELLINGS = [...GO_TRUE, ...GO_FALSE].join(", ");

/** strconv.ParseBool: anything but its spellings is undefined. */
export const parseGoBool = (text: string): boolean | undefined => (GO_TRUE.includes(text) ? true : GO_FALSE.includes(text) ? false : undefined);

const HEX = /^[0-9a-fA-F]{2}$/;

/**
 * url.QueryUnescape: `+` is a space, `%XX` is one byte, a `%` not followed by
 * two hex digits is an error (undefined). Other bytes pass through as they are.
 */
export function queryUnescape(text: string): Uint8Array | undefined {
  const raw = latin1Bytes(text);
  const out = new Uint8Array(raw.length);
  let n = 0;
  for (let i = 0; i < raw.length; i++) {
    const byte = raw[i]!;
    if (byte === 0x25 /* % */) {
      const hex = text.slice(i + 1, i + 3);
      if (!HEX.test(hex)) return undefined;
      out[n++] = Number.parseInt(hex, 16);
      i += 2;
    } else {
      out[n++] = byte === 0x2b /* + */ ? 0x20 : byte;
    }
  }
  return out.subarray(0, n);
}

/**
 * url.ParseQuery followed by Values.Get(key): the first value of `key`, as
 * bytes, or an empty value when the key is absent. Pairs Go rejects (a `;`
 * in the pair, a bad escape in the key or the value) are skipped, as
 * Request.URL.Query() silently does.
 */
export function goQueryGet(rawQuery: string, key: string): Uint8Array {
  for (const pair of rawQuery.split("&")) {
    if (pair === "" || pair.includes(";")) continue;
    const eq = pair.indexOf("=");
    const name = queryUnescape(eq < 0 ? pair : pair.slice(0, eq));
    if (name === undefined) continue;
    const value = queryUnescape(eq < 0 ? "" : pair.slice(eq + 1));
    if (value === undefined) continue;
    if (latin1String(name) === key) return value;
  }
  return new Uint8Array(0);
}

/** Headers http.Error sets. */
export const GO_ERROR_HEADERS = {
  "Content-Type": "text/plain; charset=utf-8",
  "X-Content-Type-Options": "nosniff",
} as const;

/** http.Error(w, message, status): the message and a newline; `allow`: the Allow header of a 405. */
export function goError(message: string, status: number, allow?: string): Response {
  return goText(`${message}\n`, status, allow === undefined ? GO_ERROR_HEADERS : { ...GO_ERROR_HEADERS, Allow: allow });
}

/** Text written without a Content-Type: Go's content sniffing gives text/plain. */
export function goText(body: string | Uint8Array, status: number, headers: Record<string, string> = { "Content-Type": "text/plain; charset=utf-8" }): Response {
  return new Response(body, { status, headers });
}

/** One byte per UTF-16 unit (its low byte): the request target arrives percent-encoded, so it is ASCII. */
const latin1Bytes = (text: string): Uint8Array => Buffer.from(text, "latin1");

export const latin1String = (bytes: Uint8Array): string => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("latin1");

export const concatBytes = (...parts: Uint8Array[]): Uint8Array => Buffer.concat(parts);
