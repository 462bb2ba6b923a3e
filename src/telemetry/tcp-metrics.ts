// Kmesh's TCP metrics, kept from the access records the agent names: per workload pair, per
// Service, and per long-lived connection (labels.ts says what each label is). How they are exact
// and bounded, unlike Kmesh's: README, "Kmesh's TCP metrics (Prometheus)". A series adds what
// changed since its connection's previous report; once one of its pods or its Service has been
// gone (or its outside address idle) for the grace period, it goes.
//
// The agent hands every named record to observe() while the TCP metrics are on (with the pods and
// Service its enricher found), calls sweep() every second and serves render().
import type { AccessRecord } from "../accesslog/format.ts";
import { KmeshText } from "../accesslog/format.ts";
import type { ServiceRef } from "../kube/apiserver/cluster-index.ts";
import type { PodInfo } from "../kube/pod.ts";
import { CONNECTION_LABELS, labelText, type PeerContext, peerValues, SERVICE_LABELS, TAIL_VALUES, UNKNOWN, WORKLOAD_LABELS } from "./labels.ts";

/** What tells whether a pod or a Service still exists (the kubelet's list, the API server's index). */
export interface KubeView {
  /** `namespace/name` */
  hasPod(key: string): boolean;
  hasService(key: string): boolean;
}

export interface TcpMetricsOptions extends PeerContext {
  /** `kmesh` or `istio`: the first word of every name */
  prefix: string;
  /** how long the series of a gone pod or Service, or of an idle address, are kept, ms */
  graceMs: number;
  /** connections open longer than this get per-connection series, ms */
  reportIntervalMs: number;
}

type Kind = "workload" | "service" | "connection";

// Each family's metrics: the name after `<prefix>_tcp_` (Kmesh's, its spelling "conntections" on
// purpose: dashboards look for it) and our help; a metric's place is the index of its value.
const FAMILIES: Readonly<Record<Kind, readonly { name: string; help: string }[]>> = {
  workload: [
    { name: "workload_connections_opened_total", help: "TCP connections opened, by source and destination workload." },
    { name: "workload_connections_closed_total", help: "TCP connections closed after being opened, by source and destination workload." },
    { name: "workload_sent_bytes_total", help: "Payload bytes the reporting socket sent (and the peer acknowledged), by source and destination workload." },
    { name: "workload_received_bytes_total", help: "Payload bytes the reporting socket received, by source and destination workload." },
    { name: "workload_conntections_failed_total", help: "TCP connection attempts that never became established, by source and destination workload." },
    { name: "retrans_total", help: "TCP segments retransmitted, by source and destination workload." },
    { name: "packet_loss_total", help: "TCP packets lost, by source and destination workload." },
  ],
  service: [
    { name: "connections_opened_total", help: "TCP connections opened, by source workload and destination service." },
    { name: "connections_closed_total", help: "TCP connections closed after being opened, by source workload and destination service." },
    { name: "sent_bytes_total", help: "Payload bytes the reporting socket sent (and the peer acknowledged), by source workload and destination service." },
    { name: "received_bytes_total", help: "Payload bytes the reporting socket received, by source workload and destination service." },
    { name: "conntections_failed_total", help: "TCP connection attempts that never became established, by source workload and destination service." },
  ],
  connection: [
    { name: "connection_sent_bytes_total", help: "Payload bytes sent on a TCP connection open longer than the report interval, while it is open." },
    { name: "connection_received_bytes_total", help: "Payload bytes received on a TCP connection open longer than the report interval, while it is open." },
    { name: "connection_packet_lost_total", help: "TCP packets lost on a connection open longer than the report interval, while it is open." },
    { name: "connection_retrans_total", help: "TCP segments retransmitted on a connection open longer than the report interval, while it is open." },
  ],
};

// Where each figure is in a series' values.
const OPENED = 0;
const CLOSED = 1;
const SENT = 2;
const RECEIVED = 3;
const FAILED = 4;
const RETRANS = 5;
const LOST = 6;
// A connection series' values: sent, received, lost, retransmitted (FAMILIES.connection's order).
const C_SENT = 0;
const C_RECEIVED = 1;
const C_LOST = 2;
const C_RETRANS = 3;

/** A pod or a Service some series name, and since when it has been missing. */
interface Entity {
  key: string;
  pod: boolean;
  series: Set<Series>;
  goneSinceMs: number | null;
}

interface Series {
  kind: Kind;
  /** removed from its map: a cached reference to it is stale */
  dropped: boolean;
  /** `{name="value",...}`, also its key */
  labels: string;
  values: number[];
  entities: Entity[];
  /** dropped when idle for the grace period (its destination is an address) */
  idleExpiry: boolean;
  lastUpdateMs: number;
}

/** What is kept of an open connection between its reports. */
interface Connection {
  sent: number;
  received: number;
  retrans: number;
  lost: number;
  /** the sweep count when it was last reported */
  seen: number;
  series: Series | null;
}

/** The pods and the Service a record names, as the enricher found them. */
interface Ends {
  src: PodInfo | undefined;
  dst: PodInfo | undefined;
  service: ServiceRef | undefined;
}

interface SeriesPair {
  workload: Series;
  service: Series;
}

/** Stands for an unknown pod or no Service in the pair cache's keys. */
const NOBODY = {};
/** Destinations remembered per source, destination pod and Service (outside addresses can be many). */
const MAX_PAIRS_PER_PEERS = 4096;

/** A connection not reported for this many sweeps of a periodic read has closed unseen. */
const UNSEEN_SCANS = 3;
const CLOSE_STATE = "BPF_TCP_CLOSE";

export class TcpMetrics {
  readonly #o: TcpMetricsOptions;
  readonly #series: Record<Kind, Map<string, Series>> = { workload: new Map(), service: new Map(), connection: new Map() };
  readonly #entities = new Map<string, Entity>();
  readonly #idle = new Set<Series>();
  readonly #connections = new Map<string, Connection>();
  /** source pod → destination pod → Service → reporter, address, dst.service → the record's series */
  #pairs = new WeakMap<object, WeakMap<object, WeakMap<object, Map<string, SeriesPair>>>>();
  /** label text of a pod as source or destination, computed once per pod object */
  readonly #sourceText = new WeakMap<PodInfo, string>();
  readonly #destinationText = new WeakMap<PodInfo, string>();
  readonly #unknownSource: string;
  readonly #unknownDestination: string;
  readonly #times = new KmeshText();
  #connectionSeries = false;
  #scans = 0;
  /** series dropped because what they name is gone or idle */
  dropped = 0;
  /** What tells whether a pod or Service still exists; null: no Kubernetes source (every end unknown). */
  kube: KubeView | null = null;

  constructor(options: TcpMetricsOptions) {
    this.#o = options;
    this.#unknownSource = labelText(WORKLOAD_LABELS, 1, peerValues(undefined, options));
    this.#unknownDestination = labelText(WORKLOAD_LABELS, 12, peerValues(undefined, options));
  }

  /** Series of each kind now. */
  get counts(): Record<Kind, number> {
    return { workload: this.#series.workload.size, service: this.#series.service.size, connection: this.#series.connection.size };
  }

  /** Per-connection series on or off (off drops them). */
  setConnectionSeries(on: boolean): void {
    this.#connectionSeries = on;
    if (!on) for (const series of [...this.#series.connection.values()]) this.#drop(series);
  }

  /** Forgets everything (the metrics were turned off). */
  clear(): void {
    for (const map of Object.values(this.#series)) for (const series of map.values()) series.dropped = true;
    for (const map of Object.values(this.#series)) map.clear();
    this.#pairs = new WeakMap();
    this.#entities.clear();
    this.#idle.clear();
    this.#connections.clear();
  }

  /**
   * Counts one record. `r.connection` identifies its connection (records read while the metrics
   * were off have none and are not counted); src, dst and service are what the enricher found.
   */
  observe(r: AccessRecord, nowMs: number, src?: PodInfo, dst?: PodInfo, service?: ServiceRef): void {
    const key = r.connection;
    if (key === undefined) return;
    const close = r.state === CLOSE_STATE;
    const established = r.error === null;
    const before = this.#connections.get(key);
    // A report whose figures went down is another connection on the same addresses.
    const known =
      before !== undefined &&
      r.sentBytes >= before.sent &&
      r.receivedBytes >= before.received &&
      r.retransmissions >= before.retrans &&
      r.packetLoss >= before.lost;
    const sent = r.sentBytes - (known ? before.sent : 0);
    const received = r.receivedBytes - (known ? before.received : 0);
    const retrans = r.retransmissions - (known ? before.retrans : 0);
    const lost = r.packetLoss - (known ? before.lost : 0);

    const reporter = r.direction === "OUTBOUND" ? "source" : "destination";
    const { workload, service: svc } = this.#pairOf(r, reporter, src, dst, service, nowMs);
    if (established && !known) {
      workload.values[OPENED]!++;
      svc.values[OPENED]!++;
    }
    workload.values[SENT]! += sent;
    workload.values[RECEIVED]! += received;
    workload.values[RETRANS]! += retrans;
    workload.values[LOST]! += lost;
    svc.values[SENT]! += sent;
    svc.values[RECEIVED]! += received;

    if (close) {
      if (established) {
        workload.values[CLOSED]!++;
        svc.values[CLOSED]!++;
      } else {
        workload.values[FAILED]!++;
        svc.values[FAILED]!++;
      }
      if (before !== undefined) {
        if (before.series !== null) this.#drop(before.series, false);
        this.#connections.delete(key);
      }
      return;
    }
    if (before !== undefined && !known && before.series !== null) this.#drop(before.series, false);
    const connection: Connection = known ? before : { sent: 0, received: 0, retrans: 0, lost: 0, seen: 0, series: null };
    connection.sent = r.sentBytes;
    connection.received = r.receivedBytes;
    connection.retrans = r.retransmissions;
    connection.lost = r.packetLoss;
    connection.seen = this.#scans;
    if (!known) this.#connections.set(key, connection);
    // Open longer than the report interval (or since before the agent): a series of its own.
    if (this.#connectionSeries && (r.durationMs === null || r.durationMs > this.#o.reportIntervalMs)) {
      connection.series ??= this.#connectionSeriesOf(r, reporter, { src, dst, service }, nowMs);
      const values = connection.series.values;
      values[C_SENT] = r.sentBytes;
      values[C_RECEIVED] = r.receivedBytes;
      values[C_LOST] = r.packetLoss;
      values[C_RETRANS] = r.retransmissions;
      connection.series.lastUpdateMs = nowMs;
    }
  }

  /** A periodic read of every open connection has been counted. */
  scanned(): void {
    this.#scans++;
    for (const [key, connection] of this.#connections) {
      if (this.#scans - connection.seen < UNSEEN_SCANS) continue;
      // Closed without its close reaching us (the kernel skipped it): nothing more will come.
      if (connection.series !== null) this.#drop(connection.series, false);
      this.#connections.delete(key);
    }
  }

  /** Drops the series of pods and Services gone for the grace period, and of addresses idle that long. */
  sweep(nowMs: number): void {
    const kube = this.kube;
    const grace = this.#o.graceMs;
    for (const entity of [...this.#entities.values()]) {
      const exists = kube !== null && (entity.pod ? kube.hasPod(entity.key) : kube.hasService(entity.key));
      if (exists) {
        entity.goneSinceMs = null;
        continue;
      }
      entity.goneSinceMs ??= nowMs;
      if (nowMs - entity.goneSinceMs >= grace) for (const series of [...entity.series]) this.#drop(series);
    }
    for (const series of [...this.#idle]) if (nowMs - series.lastUpdateMs >= grace) this.#drop(series);
  }

  /** The exposition text (Prometheus 0.0.4): every family that has a series, counters all. */
  render(): string {
    let text = "";
    for (const kind of ["workload", "service", "connection"] as const) {
      const series = this.#series[kind];
      if (series.size === 0) continue;
      FAMILIES[kind].forEach((metric, index) => {
        const name = `${this.#o.prefix}_tcp_${metric.name}`;
        text += `# HELP ${name} ${metric.help}\n# TYPE ${name} counter\n`;
        for (const s of series.values()) text += `${name}${s.labels} ${s.values[index]}\n`;
      });
    }
    return text;
  }

  // ── Series ────────────────────────────────────────────────────────────────

  /**
   * The workload and service series of a record. Their label texts are long (23 labels), so the
   * pair is also found by the objects that make them, the pods and the Service as the indexes
   * hold them (new objects at each change), and the few strings beside: most records cost four
   * map lookups, none builds a label text.
   */
  #pairOf(r: AccessRecord, reporter: string, src: PodInfo | undefined, dst: PodInfo | undefined, service: ServiceRef | undefined, nowMs: number): SeriesPair {
    let bySrc = this.#pairs.get(src ?? NOBODY);
    if (bySrc === undefined) this.#pairs.set(src ?? NOBODY, (bySrc = new WeakMap()));
    let byDst = bySrc.get(dst ?? NOBODY);
    if (byDst === undefined) bySrc.set(dst ?? NOBODY, (byDst = new WeakMap()));
    let byService = byDst.get(service ?? NOBODY);
    if (byService === undefined) byDst.set(service ?? NOBODY, (byService = new Map()));
    const key = `${reporter} ${r.dstAddr} ${r.dstService ?? ""}`;
    let pair = byService.get(key);
    if (pair === undefined || pair.workload.dropped || pair.service.dropped) {
      const sourceText = src === undefined ? this.#unknownSource : this.#peerText(this.#sourceText, src, 1);
      const destinationText = dst === undefined ? this.#unknownDestination : this.#peerText(this.#destinationText, dst, 12);
      const ends = { src, dst, service };
      const labels = (names: readonly string[], values: string[]) =>
        `{reporter="${reporter}",${sourceText},${labelText(names, 9, values)},${destinationText},${TAIL}}`;
      pair = {
        workload: this.#seriesOf("workload", labels(WORKLOAD_LABELS, podValues(r, ends)), nowMs, { ...ends, service: undefined }),
        service: this.#seriesOf("service", labels(SERVICE_LABELS, serviceValues(r, ends)), nowMs, ends),
      };
      if (byService.size > MAX_PAIRS_PER_PEERS) byService.clear();
      byService.set(key, pair);
    }
    pair.workload.lastUpdateMs = nowMs;
    pair.service.lastUpdateMs = nowMs;
    return pair;
  }

  #peerText(cache: WeakMap<PodInfo, string>, pod: PodInfo, from: number): string {
    let text = cache.get(pod);
    if (text === undefined) {
      text = labelText(WORKLOAD_LABELS, from, peerValues(pod, this.#o));
      cache.set(pod, text);
    }
    return text;
  }

  #connectionSeriesOf(r: AccessRecord, reporter: string, ends: Ends, nowMs: number): Series {
    const { src, dst } = ends;
    const host = (addr: string, port: number) => (r.family === 6 ? `[${addr}]:${port}` : `${addr}:${port}`);
    const startTime = r.startTime === null ? UNKNOWN : this.#times.goTime(r.startTime);
    const labels =
      `{reporter="${reporter}",` +
      labelText(CONNECTION_LABELS, 1, [startTime]) +
      `,${labelText(CONNECTION_LABELS, 2, peerValues(src, this.#o))},` +
      labelText(CONNECTION_LABELS, 10, [host(r.srcAddr, r.srcPort), host(r.dstAddr, r.dstPort), ...podValues(r, ends), ...serviceValues(r, ends)]) +
      `,${labelText(CONNECTION_LABELS, 18, peerValues(dst, this.#o))},${TAIL}}`;
    // Removed when its connection closes, not by the sweep: it names no entity.
    const series: Series = { kind: "connection", dropped: false, labels, values: [0, 0, 0, 0], entities: [], idleExpiry: false, lastUpdateMs: nowMs };
    this.#series.connection.set(labels, series);
    return series;
  }

  #seriesOf(kind: "workload" | "service", labels: string, nowMs: number, { src, dst, service }: Ends): Series {
    const map = this.#series[kind];
    let series = map.get(labels);
    if (series === undefined) {
      const entities: Entity[] = [];
      if (src !== undefined) entities.push(this.#entity(`${src.namespace ?? ""}/${src.name}`, true));
      if (dst !== undefined) entities.push(this.#entity(`${dst.namespace ?? ""}/${dst.name}`, true));
      if (service !== undefined) entities.push(this.#entity(`${service.namespace}/${service.name}`, false));
      series = { kind, dropped: false, labels, values: new Array<number>(FAMILIES[kind].length).fill(0), entities, idleExpiry: dst === undefined && service === undefined, lastUpdateMs: nowMs };
      for (const entity of entities) entity.series.add(series);
      if (series.idleExpiry) this.#idle.add(series);
      map.set(labels, series);
    }
    series.lastUpdateMs = nowMs;
    return series;
  }

  #entity(key: string, pod: boolean): Entity {
    const id = `${pod ? "pod" : "service"} ${key}`;
    let entity = this.#entities.get(id);
    if (entity === undefined) {
      entity = { key, pod, series: new Set(), goneSinceMs: null };
      this.#entities.set(id, entity);
    }
    return entity;
  }

  /** Removes a series; `count`: it was dropped for being gone or idle (not a closed connection's). */
  #drop(series: Series, count = true): void {
    const map = this.#series[series.kind];
    if (map.get(series.labels) !== series) return;
    map.delete(series.labels);
    series.dropped = true;
    this.#idle.delete(series);
    for (const entity of series.entities) {
      entity.series.delete(series);
      if (entity.series.size === 0) this.#entities.delete(`${entity.pod ? "pod" : "service"} ${entity.key}`);
    }
    if (count) this.dropped++;
  }
}

/** destination_pod_address, _namespace and _name (labels.ts). */
function podValues(r: AccessRecord, { dst, service }: Ends): string[] {
  return [dst !== undefined || service === undefined ? r.dstAddr : UNKNOWN, dst?.namespace ?? UNKNOWN, dst?.name ?? UNKNOWN];
}

/** destination_service, _service_namespace and _service_name (labels.ts). */
function serviceValues(r: AccessRecord, { dst, service }: Ends): string[] {
  return [r.dstService ?? r.dstAddr, service?.namespace ?? dst?.namespace ?? UNKNOWN, service?.name ?? UNKNOWN];
}

/** The tail of every series: request_protocol, response_flags, connection_security_policy. */
const TAIL = labelText(WORKLOAD_LABELS, 20, TAIL_VALUES);
