// Who is asking the feed: an agent sends its service-account token as a bearer token; the feed
// asks the API server whose it is (a TokenReview, authentication.k8s.io/v1) and serves only the
// users it was told to (--allow-service-account). An answer is remembered for a while per token
// (by its SHA-256, never the token itself), so that agents reconnecting together cost the API
// server one review per token, not one per connection.
import { createHash } from "node:crypto";
import * as v from "valibot";
import type { ApiClient } from "../apiserver/client.ts";

export const TOKEN_REVIEW_PATH = "/apis/authentication.k8s.io/v1/tokenreviews";
/** How long an answer is remembered: a yes for a minute, a no for 10 s. */
const ALLOWED_TTL_MS = 60_000;
const REFUSED_TTL_MS = 10_000;
const MAX_REMEMBERED = 50_000;

const ReviewSchema = v.object({
  status: v.optional(
    v.object({
      authenticated: v.optional(v.boolean()),
      user: v.optional(v.object({ username: v.optional(v.string()) })),
      error: v.optional(v.string()),
    }),
  ),
});

export type Verdict =
  | { ok: true; user: string }
  /** 401: no token or not a valid one; 403: valid but not allowed; 503: the API server could not say */
  | { ok: false; status: 401 | 403 | 503; message: string };

/** `system:serviceaccount:<namespace>:<name>` of `namespace:name` (the flag's spelling). */
export const serviceAccountUser = (namespaceName: string) => `system:serviceaccount:${namespaceName}`;

export class TokenReviewer {
  readonly #client: ApiClient;
  readonly #allowed: ReadonlySet<string>;
  readonly #now: () => number;
  readonly #remembered = new Map<string, { until: number; verdict: Verdict }>();
  /** reviews asked of the API server */
  reviews = 0;

  constructor(client: ApiClient, allowedUsers: readonly string[], now: () => number = Date.now) {
    this.#client = client;
    this.#allowed = new Set(allowedUsers);
    this.#now = now;
  }

  /** The verdict on a request's Authorization header. */
  async check(authorization: string | null): Promise<Verdict> {
    const token = /^Bearer (\S+)$/.exec(authorization ?? "")?.[1];
    if (token === undefined) return { ok: false, status: 401, message: "no bearer token: send the agent's service-account token (--feed-token-file)" };
    const digest = createHash("sha256").update(token).digest("hex");
    const kept = this.#remembered.get(digest);
    if (kept !== undefined && kept.until > this.#now()) return kept.verdict;
    const verdict = await this.#review(token);
    if (verdict.ok || verdict.status !== 503) {
      if (this.#remembered.size >= MAX_REMEMBERED) this.#remembered.clear();
      this.#remembered.set(digest, { until: this.#now() + (verdict.ok ? ALLOWED_TTL_MS : REFUSED_TTL_MS), verdict });
    }
    return verdict;
  }

  async #review(token: string): Promise<Verdict> {
    this.reviews++;
    const answer = await this.#client.postJson(TOKEN_REVIEW_PATH, { apiVersion: "authentication.k8s.io/v1", kind: "TokenReview", spec: { token } });
    if (!answer.ok) {
      return { ok: false, status: 503, message: `cannot review the token with the API server (${answer.failure.kind}: ${answer.failure.detail}): try again later` };
    }
    const review = v.safeParse(ReviewSchema, answer.json);
    if (!review.success) return { ok: false, status: 503, message: "the API server's TokenReview answer is not one: try again later" };
    const status = review.output.status;
    const user = status?.user?.username;
    if (status?.authenticated !== true || user === undefined) {
      return { ok: false, status: 401, message: `the token is not valid (the API server says: ${status?.error || "not authenticated"})` };
    }
    if (!this.#allowed.has(user)) {
      return { ok: false, status: 403, message: `${user} may not read the feed: start the feed with --allow-service-account <namespace>:<name> for it` };
    }
    return { ok: true, user };
  }
}
