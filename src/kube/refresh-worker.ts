// The refresh worker: fetches, parses and indexes the pod list off the main thread, so that a
// huge or slow answer never delays a line. Its first message carries the kubelet settings; it
// answers each { type: "refresh" } with the outcome, whose index is plain arrays.
//
// The compiled binary embeds this file as a second entrypoint (scripts/build); refresher.ts
// finds it there or, when running from source, beside itself.
import { KubeletClient } from "./kubelet-client.ts";
import { type FromRefreshWorker, refreshOnce, type ToRefreshWorker } from "./refresh.ts";

declare const self: Worker;

let client: KubeletClient | null = null;

self.onmessage = async (event: MessageEvent<ToRefreshWorker>) => {
  const message = event.data;
  if (message.type === "configure") {
    client = new KubeletClient(message.config);
    return;
  }
  if (client === null) throw new Error("refresh before configure");
  const answer: FromRefreshWorker = { type: "outcome", id: message.id, outcome: await refreshOnce(client) };
  self.postMessage(answer);
};
