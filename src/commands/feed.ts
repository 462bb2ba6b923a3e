// `feed`: one list and watch of the API server's Services, EndpointSlices and Pods for the whole
// cluster, served to every agent (run --feed) over TLS until SIGINT or SIGTERM (src/kube/feed/).
// With --state-file, a clean stop writes what it holds and the next start reads it back, so that
// agents resume from their version instead of taking a whole snapshot again.
import { readFileSync } from "node:fs";
import { formatHostPort } from "../address.ts";
import { EXIT_USAGE, ExitError, readOr } from "../errors.ts";
import { ApiClient } from "../kube/apiserver/client.ts";
import { resolveApiSettings } from "../kube/apiserver/settings.ts";
import { ApiSource } from "../kube/apiserver/source.ts";
import { FeedServer } from "../kube/feed/server.ts";
import { FeedStore } from "../kube/feed/store.ts";
import { serviceAccountUser, TokenReviewer } from "../kube/feed/token-review.ts";
import { createLogger } from "../log.ts";
import type { FeedOptions } from "../options.ts";
import { untilStopped } from "../stop.ts";

class FeedError extends ExitError {
  override name = "FeedError";
  override readonly context = "cannot start the feed";
  constructor(
    message: string,
    override readonly exitCode = EXIT_USAGE,
  ) {
    super(message);
  }
}

function readPem(path: string | undefined, what: string): string {
  if (path === undefined) throw new FeedError(`the ${what} is required`);
  return readOr((p) => readFileSync(p, "utf8"), path, (why) => new FeedError(`cannot read the ${what} ${path}: ${why}`));
}

export async function feedCommand(options: FeedOptions): Promise<number> {
  const log = createLogger(options.logLevel);
  const settings = await resolveApiSettings({ kubeApi: true, kubeconfig: options.kubeconfig });
  if (settings === null) throw new FeedError("no API server: run it in a cluster, or give --kubeconfig");
  const tls = { cert: readPem(options.tlsCertFile, "TLS certificate"), key: readPem(options.tlsKeyFile, "TLS key") };
  const loaded = options.stateFile === undefined ? { store: null, problem: null } : FeedStore.load(options.stateFile);
  if (loaded.problem !== null) log.warn(`feed: ${loaded.problem}: starting a new history (agents take a snapshot)`);
  const store = loaded.store ?? new FeedStore();
  const client = new ApiClient(settings);
  const source = new ApiSource({ client, index: store, notice: log.warn, info: log.info, debug: log.debug });
  const reviewer = new TokenReviewer(client, (options.allowServiceAccount ?? []).map(serviceAccountUser));
  let server: FeedServer;
  try {
    server = FeedServer.start({
      store,
      listen: options.listen,
      tls,
      authenticate: (authorization) => reviewer.check(authorization),
      ready: () => source.synced,
      log,
    });
  } catch (error) {
    throw new FeedError(`cannot listen on ${formatHostPort(options.listen)}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`, 1);
  }
  server.metrics.add("feed_token_reviews_total", "counter", "TokenReviews asked of the API server.", () => reviewer.reviews);
  source.start();
  log.info(
    `feed: serving agents on ${server} (history ${store.id}, ${loaded.store === null ? "new" : `version ${store.seq} read from ${options.stateFile}`}); ` +
      `listing the API server at ${settings.server}`,
  );
  await untilStopped();
  await server.stop();
  await source.stop();
  if (options.stateFile !== undefined) {
    store.save(options.stateFile);
    log.info(`feed: stopped; version ${store.seq} of history ${store.id} written to ${options.stateFile}`);
  } else {
    log.info(`feed: stopped at version ${store.seq}`);
  }
  return 0;
}
