// The Agent owns everything that runs, and is the one place that wires the folders together: the
// runtime control (single-agent lock, switches, periodic reports, admin API), the TCP metrics and
// their address, the clock, the pod sources (kubelet, API server), the kernel probe and the line
// sink. It starts them in that order and stops them in reverse, from one place, and registers what
// they count for /metrics. The event loop is never blocked: a timer drains the ring buffer (often
// while records come, backing off while none do) and hands each named record to the non-blocking
// sink (as a line) and to the TCP metrics, as the switches say.
import { Enricher, NO_KUBELET } from "./accesslog/enrich.ts";
import { filterLabel, FILTER_ORDER, kernelRules, ReportFilter } from "./accesslog/filters.ts";
import { type AccessRecord, JsonLines, KmeshText } from "./accesslog/format.ts";
import { AccessRecordPool, BATCH_RECORDS } from "./accesslog/record.ts";
import { LineSink } from "./accesslog/sink.ts";
import { AgentControl } from "./admin/control.ts";
import type { MetricsRegistry, MetricType, Sample } from "./admin/metrics.ts";
import { handleMetricsRequest } from "./admin/routes.ts";
import { HttpServer, METRICS_LISTENER } from "./admin/server.ts";
import { type Outputs, outputsOf, startupSwitches } from "./admin/switches.ts";
import { createClock, type Clock } from "./kernel/clock.ts";
import { KERNEL_FILTERS, Probe, type ProbeCounters, type RunsSkipped, totalSkipped } from "./kernel/probe.ts";
import type { ConntrackWatch } from "./kernel/conntrack.ts";
import { ContainerIds } from "./kernel/cgroups.ts";
import { RecordError, RECORD_SIZE, RecordView } from "./kernel/record.ts";
import type { ClusterIndex, ServiceRef } from "./kube/apiserver/cluster-index.ts";
import { resolveApiSettings } from "./kube/apiserver/settings.ts";
import type { ApiSource } from "./kube/apiserver/source.ts";
import type { FeedSource } from "./kube/feed/client.ts";
import { createPodSource, type PodSource } from "./kube/kubelet/pod-source.ts";
import { resolveKubeletSettings, settingsNotices } from "./kube/kubelet/settings.ts";
import type { PodInfo } from "./kube/pod.ts";
import type { HostPort } from "./address.ts";
import { ExitError } from "./errors.ts";
import { createLogger, type Logger } from "./log.ts";
import { stdoutSink } from "./output.ts";
import type { ExporterStats, OtlpExporter } from "./sink/otlp/exporter.ts";
import { resolveExporterSettings } from "./sink/otlp/settings.ts";
import { Sinks } from "./sink/sinks.ts";
import { untilStopped } from "./stop.ts";
import { type KubeView, TcpMetrics } from "./telemetry/tcp-metrics.ts";
import { adminSocketBeside, DEFAULT_KUBELET_HOLD_S, DEFAULT_MAX_BUFFERED_OUTPUT_BYTES, type FilterName, filtersOf, type RunOptions } from "./options.ts";

/** What the agent counts (the probe's counters and its own). */
export type AgentCounters = ProbeCounters & { recordsRead: number; recordsInvalid: number; linesWritten: number; linesDropped: number };

/**
 * How often the ring buffer is drained while records come. The kernel does not wake us per record,
 * and a drain has a cost of its own, whatever it reads (the timer, the switch back, the write of the
 * lines: README, "Reading the ring buffer, and when"): fewer drains, less CPU per line.
 */
const DRAIN_INTERVAL_MS = 20;
/** The pause while records come, for a ring that a burst at BURST_RECORDS_PER_MS would half fill sooner than DRAIN_INTERVAL_MS. */
const MIN_DRAIN_INTERVAL_MS = 10;
/**
 * While none come, the pause doubles up to this: idle, the agent wakes ten times a second. (It is
 * shorter for rings that a burst at BURST_RECORDS_PER_MS would half fill sooner.)
 */
const IDLE_DRAIN_INTERVAL_MS = 100;
/** A fast node's closes at most, records per ms: what an idle pause must leave room for. */
const BURST_RECORDS_PER_MS = 500;
/** Bytes a record takes in the ring buffer: the record and the ring's 8-byte header. */
const RING_RECORD_BYTES = RECORD_SIZE + 8;
/** The kernel has not lost a record for this long: the loss has ended, and the agent says so. */
const LOSS_QUIET_NS = 1e9;
/** How often the kernel's count of skipped probe runs is read (two system calls). */
const SKIPS_CHECK_INTERVAL_MS = 1_000;
/**
 * How often the hash map is swept for states whose close reached neither of the probe's programs
 * (report_one in bpf/accesslog.bpf.c takes them out and counts them in closes_missed): the kernel
 * does not always run them, nor count that (README, "A burst of closes"). Also once at stop.
 */
const STATES_SWEEP_INTERVAL_MS = 60_000;
/** No run skipped for this long: the next skip is told on stderr again. */
const SKIPS_QUIET_NS = 60e9;
/** How often the monotonic → wall clock offset is measured again (NTP steps). */
const RECALIBRATE_INTERVAL_MS = 60_000;
/** How often the TCP metrics look for series of pods and Services that are gone. */
const METRICS_SWEEP_INTERVAL_MS = 1_000;
const CLOSE_STATE = "BPF_TCP_CLOSE";

/**
 * A full collection, at once, after the two things that leave megabytes of garbage: a pod-list
 * refresh and a periodic report. Left to itself the engine lets the heap grow by about its own size
 * before it collects, and it counts the 16 MiB ring-buffer mapping as part of that heap: the
 * garbage stayed resident (README, "Footprint"). Output never depends on when it runs: the kubelet
 * timeout counts only the waiting for the kubelet (kube/kubelet/client.ts).
 */
const collectGarbage = () => Bun.gc(true);

/**
 * Calls `shrink` once, after the first pod list with pods: Bun.shrink() (JSC's
 * shrinkFootprintWhenIdle) drops the compiled code, which is compiled again as it is used, collects
 * and gives back the allocator's free memory. What the start and that first list left behind is
 * about 3 MB of the agent's own memory with 1,000 pods (README, "Footprint"); later lists leave
 * garbage that the collections above take, so once is enough.
 */
export function shrinkAfterFirstPods(shrink: () => void): (podCount: number) => void {
  let done = false;
  return (podCount) => {
    if (done || podCount === 0) return;
    done = true;
    shrink();
  };
}

export class Agent {
  #timers: Timer[] = [];
  #drainTimer: Timer | null = null;
  /** The pause after a drain that read records; the longest one while none come; the next one. */
  readonly #busyPauseMs: number;
  readonly #idlePauseMs: number;
  #drainPauseMs: number;
  /** Records the kernel had lost at the last drain; whether it is losing them now, since when. */
  #lostSeen = 0;
  #lostAtStart = 0;
  #losing = false;
  #lastLossNs = 0;
  /** Probe runs the kernel had skipped at the last look (null: it does not count them); when it last did. */
  #skipsSeen: RunsSkipped | null = null;
  #lastSkipNs: number | null = null;
  /** The socket-end program's skips were told in this spell of skips. */
  #endSkipsTold = false;
  /** The pod list and the names it gives lines; null with --no-kubelet. */
  #pods: PodSource | null = null;
  /** Services and every pod, from the API server; null when off. */
  #api: ApiSource | null = null;
  /** The feed (--feed), which watches the API server (#api) only while it cannot be had. */
  #feed: FeedSource | null = null;
  #enricher: Enricher | null = null;
  /** The kernel's NAT translations, for ClusterIP lines; null without the API server. */
  #conntrack: ConntrackWatch | null = null;
  #recordsRead = 0;
  #recordsInvalid = 0;
  /** Reads each ring-buffer record where it lies (no object per record). */
  readonly #record = new RecordView();
  /** The container of each record's process, from its cgroup. */
  readonly #containers = new ContainerIds();
  /** The records of a batch, filled again batch after batch (no object per record either). */
  readonly #records: AccessRecordPool;
  #lastInvalid = "";
  /** What the switches ask for now (AgentControl applies them). */
  #outputs: Outputs;
  /** Which reports are written (AgentControl applies the flags', then PUT /filters'). */
  #filter: ReportFilter;
  /** Reports each filter dropped here (the kernel counts its own: Probe.filterDrops). */
  readonly filtered = Object.fromEntries(FILTER_ORDER.map((name) => [name, 0])) as Record<FilterName, number>;
  /** Services are known (API server or feed): the kernel leaves the filters to this side (kernelRules). */
  #servicesKnown = false;
  /** Resolves when stdout can no longer be written (accesslog/sink.ts): the run ends. */
  outputEnded: Promise<OutputEnd> = new Promise(() => undefined);

  private constructor(
    private readonly clock: Clock,
    private readonly probe: Probe,
    private readonly sink: Sinks,
    private readonly control: AgentControl,
    private readonly log: Logger,
    /** Kmesh's TCP metrics, fed while the switches say so, served on --metrics-addr meanwhile. */
    private readonly metrics: TcpMetrics,
    private readonly metricsAddress: MetricsAddress,
    private readonly ringBytes: number,
    /** An output shows the process behind each socket (and its container): else neither is looked up. */
    showsProcesses: boolean,
  ) {
    this.#records = new AccessRecordPool(BATCH_RECORDS, showsProcesses);
    const pauses = drainPauses(ringBytes);
    this.#busyPauseMs = pauses.busyMs;
    this.#idlePauseMs = pauses.idleMs;
    this.#drainPauseMs = pauses.busyMs;
    this.#outputs = outputsOf(control.switches());
    this.#filter = new ReportFilter(control.filters());
  }

  static async start(options: RunOptions): Promise<Agent> {
    const log = createLogger(options.logLevel);
    const switches = startupSwitches(options);
    if (!switches.ok) throw new Error(switches.message); // cli.ts already refused it
    // First: a second agent is refused before it loads anything.
    const control = await AgentControl.start({
      switches: switches.switches,
      filters: filtersOf(options),
      reportIntervalMs: options.reportInterval * 1000,
      adminAddr: options.adminAddr,
      adminSocket: options.adminSocket === undefined ? adminSocketBeside(options.lockFile) : options.adminSocket,
      access: { uids: options.adminAllowUid ?? [], gids: options.adminAllowGid ?? [] },
      lockFile: options.lockFile,
      log,
    });
    const metrics = new TcpMetrics({
      prefix: options.metricsPrefix,
      clusterName: options.clusterName,
      trustDomain: options.trustDomain,
      graceMs: options.metricsGrace * 1000,
      reportIntervalMs: options.reportInterval * 1000,
    });
    // Served only while the TCP metrics are on; when they are on from the start, a taken port is
    // refused now, before anything loads.
    const metricsAddress = new MetricsAddress(options.metricsAddr, metrics, log);
    const clock = createClock();
    const kubelet = resolveKubeletSettings(options);
    let pods: PodSource | null = null;
    let api: ApiSource | null = null;
    let feed: FeedSource | null = null;
    let probe: Probe;
    let otlp: OtlpExporter | null = null;
    let showsProcesses = false;
    try {
      metricsAddress.serve(outputsOf(switches.switches).tcpMetrics);
      // Before the probe: the first pod list is read while the BPF object loads.
      if (kubelet !== null) for (const notice of settingsNotices(kubelet)) log.warn(notice);
      pods = kubelet === null ? null : createPodSource(kubelet, () => clock.nowMonotonicNs(), log);
      pods?.start();
      // A headers or CA file that cannot work is refused before the probe loads. The OTLP
      // exporter, the API server's source (and the YAML parser, for a kubeconfig), the feed's
      // client and the conntrack hook are loaded only when a run asks for them: code never loaded
      // costs no memory (README, "Footprint"; test/unit/on-demand.test.ts).
      const otlpSettings = resolveExporterSettings(options);
      otlp = otlpSettings === null ? null : new (await import("./sink/otlp/exporter.ts")).OtlpExporter(otlpSettings, log);
      const apiSettings = await resolveApiSettings(options);
      api = apiSettings === null ? null : (await import("./kube/apiserver/source.ts")).createApiSource(apiSettings, options.clusterDomain, log);
      feed = options.feed === undefined ? null : (await import("./kube/feed/client.ts")).createFeedSource(options, api, log);
      if (feed !== null) feed.start();
      else api?.start();
      control.namesKnown = pods !== null || api !== null || feed !== null;
      // Only JSON lines and OTLP name the process behind a socket (accesslog/format.ts,
      // sink/otlp/attributes.ts); the output is fixed for the run.
      showsProcesses = options.output === "json" || otlp !== null;
      probe = await Probe.open({
        ringBufferBytes: options.ringBufferSize,
        maxConnections: options.maxConnections,
        libbpfPath: options.libbpf,
        connectionState: options.connectionState,
        nameAcceptCallers: showsProcesses,
      });
    } catch (error) {
      pods?.stop();
      await feed?.stop();
      await api?.stop();
      await metricsAddress.close();
      await control.stop();
      throw error;
    }
    metrics.kube = kubeView(pods, feed?.index ?? api?.index ?? null);
    const outputEnded = Promise.withResolvers<OutputEnd>();
    const lines =
      options.output === "none"
        ? null
        : new LineSink(stdoutSink(), options.output === "json" ? new JsonLines() : new KmeshText(), {
            maxBufferedBytes: options.maxBufferedOutput ?? DEFAULT_MAX_BUFFERED_OUTPUT_BYTES,
            notice: (message) => log.warn(message),
            failed: (error) => outputEnded.resolve(outputEnd(error, log)),
          });
    const sink = new Sinks(lines, otlp);
    const agent = new Agent(clock, probe, sink, control, log, metrics, metricsAddress, options.ringBufferSize, showsProcesses);
    // Lines are named with the kubelet, the API server, or both. How long lines may wait (for the
    // pod list, for a ClusterIP line's INBOUND pair), ns:
    const holdNs = (kubelet?.holdMs ?? DEFAULT_KUBELET_HOLD_S * 1000) * 1e6;
    agent.outputEnded = outputEnded.promise;
    agent.#api = api;
    agent.#feed = feed;
    agent.#servicesKnown = api !== null || feed !== null;
    const enricher = pods === null && api === null && feed === null ? null : agent.#nameLines(pods, feed?.index ?? api?.index ?? null, holdNs);
    // Services are known (API server or feed): ClusterIP lines can be told apart.
    if ((api !== null || feed !== null) && enricher !== null) await agent.#translateClusterIps(enricher, options.libbpf);
    registerMetrics(control.metrics, agent, probe, metrics, pods, api, enricher);
    if (otlp !== null) registerOtlpMetrics(control.metrics, otlp.stats);
    feed?.registerMetrics(control.metrics);
    control.attach({
      apply: (outputs) => agent.#apply(outputs),
      applyFilters: (filters) => {
        agent.#filter = new ReportFilter(filters);
        agent.#applyKernelFilter();
      },
      reportOpenConnections: () => agent.#reportOpenConnections(),
      countOpenConnections: () => probe.reportOpenConnections(() => undefined),
    });
    // The kernel writes from the moment it is attached: what it wrote before
    // the switches said otherwise is not for the output.
    if (!outputsOf(control.switches()).kernelEmit) probe.drain(() => undefined);
    log.info(
      `capturing TCP connections (libbpf ${probe.libbpfVersion} ${probe.libbpfOrigin}, ring buffer ${options.ringBufferSize} bytes, ` +
        `${keepingText(probe, options.maxConnections)}, ` +
        `${probe.seededConnections} already open${standInsText(probe)})`,
    );
    if (probe.keepingRefusal !== null) {
      const refused = options.connectionState === "socket-storage" ? "with each socket: the kernel refused socket storage" : "in the socket table: the kernel refused it";
      log.warn(`connection state kept in a hash map, not ${refused} (${probe.keepingRefusal})`);
    }
    if (probe.acceptCallersUnknown !== null) {
      const { reason, fix } = probe.acceptCallersUnknown;
      log.warn(`the process that accepted a connection is not named (only the connecting one is): ${reason} — fix: ${fix}`);
    }
    if (probe.standInsUnattached !== null) {
      const { reason, fix } = probe.standInsUnattached;
      log.warn(`the stand-in programs are not attached, though ${standInsWanted(probe)}: ${reason} — fix: ${fix}`);
    }
    agent.#lostSeen = probe.recordsLost();
    agent.#skipsSeen = probe.runsNotMade();
    agent.#scheduleDrain(agent.#busyPauseMs);
    agent.#timers.push(
      setInterval(() => clock.recalibrate(), RECALIBRATE_INTERVAL_MS),
      setInterval(() => {
        if (agent.#outputs.tcpMetrics) metrics.sweep(performance.now());
      }, METRICS_SWEEP_INTERVAL_MS),
    );
    if (agent.#skipsSeen !== null) agent.#timers.push(setInterval(() => agent.#watchSkips(), SKIPS_CHECK_INTERVAL_MS));
    if (probe.stateKeeping !== "socket storage") agent.#timers.push(setInterval(() => agent.#sweepStates(), STATES_SWEEP_INTERVAL_MS));
    return agent;
  }

  /** The switches changed (or were first applied): the kernel's global, lines, metrics. */
  #apply(outputs: Outputs): void {
    // First what can fail: a refused change changes nothing.
    void this.metricsAddress.serve(outputs.tcpMetrics);
    this.probe.setEmitEnabled(outputs.kernelEmit);
    if (!outputs.tcpMetrics && this.#outputs.tcpMetrics) this.metrics.clear();
    this.metrics.setConnectionSeries(outputs.connectionSeries);
    this.#outputs = outputs;
    this.#applyKernelFilter();
  }

  /** Hands the kernel the filters it may apply now (the filters or the switches changed). */
  #applyKernelFilter(): void {
    const { closeLines, tcpMetrics, periodicReports } = this.#outputs;
    this.probe.setFilterRules(kernelRules(this.#filter.filters, { closeLines, tcpMetrics, periodicReports, servicesKnown: this.#servicesKnown }));
  }

  /** One record, read where it lies (in the ring buffer, or in a periodic report's batch). */
  #onRecord = (view: DataView, offset: number, length: number): void => {
    this.#recordsRead++;
    try {
      const event = this.#record.select(view, offset, length);
      // Without an enricher the record is done with once emitted: one record serves every line.
      if (this.#enricher === null) this.#records.reset();
      else if (this.#records.full) this.#endBatch();
      const record = this.#records.fill(event, this.clock);
      if (record.pid !== null) record.containerId = this.#containers.containerOf(event.ownerCgroupId);
      if (this.#outputs.tcpMetrics) {
        const start = event.start;
        record.connection = `${event.netns} ${event.direction} ${event.srcAddr} ${event.srcPort} ${event.dstAddr} ${event.dstPort} ${start === null ? "-" : `${start.sec}.${start.nsec}`}`;
      }
      if (this.#enricher === null) this.#emit(record);
      else this.#enricher.accept(record, event.reportNs, event.srcV4, event.dstV4);
    } catch (error) {
      if (!(error instanceof RecordError)) throw error;
      this.#invalidRecord(error.message);
    }
  };

  /** A named record: a line if the switches want it, counted by the TCP metrics while they are on. */
  #emit = (record: AccessRecord, src?: PodInfo, dst?: PodInfo, service?: ServiceRef): void => {
    const outputs = this.#outputs;
    // Named now, after any wait for the pod list: a new container's status may come with it.
    if (record.containerId !== null) record.containerName = this.#pods?.containerName(record.containerId) ?? null;
    if (outputs.tcpMetrics) this.metrics.observe(record, performance.now(), src, dst, service);
    if (!(record.state === CLOSE_STATE ? outputs.closeLines : outputs.periodicReports)) return;
    const dropped = this.#filter.drops(record);
    if (dropped === null) this.sink.add(record);
    else this.filtered[dropped]++;
  };

  /** Lines get pod names from `pods`; a new pod's first lines may wait for it (accesslog/enrich.ts). */
  #nameLines(pods: PodSource | null, cluster: ClusterIndex | null, holdNs: number): Enricher {
    const enricher = new Enricher({
      source: pods ?? NO_KUBELET,
      holdNs: pods === null ? 0 : holdNs,
      cluster,
      pairHoldNs: holdNs,
      emit: this.#emit,
    });
    if (pods !== null) {
      const shrink = shrinkAfterFirstPods(() => Bun.shrink());
      pods.onRefreshed = () => {
        enricher.release(this.clock.nowMonotonicNs());
        this.sink.flush();
        collectGarbage();
        shrink(pods.index.podCount);
      };
    }
    this.#pods = pods;
    this.#enricher = enricher;
    return enricher;
  }

  /**
   * Hooks the kernel's connection tracking (now, or once nf_conntrack is loaded), so that OUTBOUND
   * lines to a ClusterIP name the backend the NAT chose wherever it runs; without it they fall
   * back to the INBOUND line of a backend on this node (accesslog/enrich.ts).
   */
  async #translateClusterIps(enricher: Enricher, libbpfPath: string | undefined): Promise<void> {
    const log = this.log;
    const { CONNTRACK_FUNCTION, ConntrackWatch } = await import("./kernel/conntrack.ts");
    this.#conntrack = new ConntrackWatch(libbpfPath, {
      hooked: (hook) => {
        enricher.nat = hook;
        log.info(`conntrack: ${hook.kind} on ${CONNTRACK_FUNCTION} attached: ClusterIP lines name the backend the NAT chose`);
      },
      failed: (error) =>
        log.warn(
          `conntrack: cannot hook the kernel's connection tracking (${error.message}): ClusterIP lines name their backend only when it is a pod of this node; ` +
            `to name backends on other nodes: ${error.fix}`,
        ),
      waiting: () => log.info("conntrack: nf_conntrack is not loaded (no NAT on this node yet): hooking it once it is"),
    });
    this.#conntrack.start();
  }

  /** Lets held lines go (each within its bound), then stops the pod source. */
  async #stopNaming(): Promise<void> {
    const enricher = this.#enricher;
    while (enricher !== null && enricher.holding > 0) {
      await Bun.sleep(MIN_DRAIN_INTERVAL_MS);
      enricher.release(this.clock.nowMonotonicNs());
    }
    this.#pods?.stop();
    await this.#feed?.stop();
    await this.#api?.stop();
  }

  /** Reports of every open connection (lines, metrics), after what the kernel had queued before. */
  #reportOpenConnections(): number {
    this.#drain();
    const count = this.probe.reportOpenConnections(this.#onRecord);
    this.#endBatch();
    if (this.#outputs.tcpMetrics) this.metrics.scanned();
    this.sink.flush();
    collectGarbage();
    return count;
  }

  #invalidRecord(message: string): void {
    this.#recordsInvalid++;
    // One line per kind of bad record, not one per record.
    if (message !== this.#lastInvalid) {
      this.#lastInvalid = message;
      this.log.warn(`skipped a malformed ring-buffer record (${message}); ${this.#recordsInvalid} skipped so far`);
    }
  }

  /** Names and writes the batch's lines (or holds some): the pool's records are free again. */
  #endBatch(): void {
    this.#enricher?.endBatch(this.clock.nowMonotonicNs());
    this.#records.reset();
  }

  /** Drains everything queued; returns how many records were read. */
  #drain(): number {
    // Held lines past their deadline go before anything newer (the order rule of enrich.ts).
    this.#enricher?.release(this.clock.nowMonotonicNs());
    const read = this.probe.drain(this.#onRecord);
    this.#endBatch();
    this.sink.flush();
    this.#watchLoss();
    return read;
  }

  /**
   * Drains, then decides when to drain next: soon while records come (at once while the ring is
   * still a quarter full: a burst), later and later while none do.
   */
  #drainAndReschedule = (): void => {
    this.#drainTimer = null;
    const read = this.#drain();
    if (read > 0) this.#drainPauseMs = this.#busyPauseMs;
    else this.#drainPauseMs = Math.min(2 * this.#drainPauseMs, this.#idlePauseMs);
    this.#scheduleDrain(this.probe.pendingBytes() * 4 >= this.ringBytes ? 0 : this.#drainPauseMs);
  };

  #scheduleDrain(ms: number): void {
    this.#drainTimer = setTimeout(this.#drainAndReschedule, ms);
  }

  /**
   * Says on stderr when the kernel starts losing records (the ring buffer is full) and when it has
   * stopped (no loss for LOSS_QUIET_NS), each time with the count and the fix.
   */
  #watchLoss(): void {
    const lost = this.probe.recordsLost();
    const now = this.clock.nowMonotonicNs();
    if (lost > this.#lostSeen) {
      if (!this.#losing) {
        this.#losing = true;
        this.#lostAtStart = this.#lostSeen;
        this.log.warn(
          `the kernel is losing records: the ring buffer (${this.ringBytes} bytes) is full; ${lost - this.#lostSeen} lost so far in this loss ` +
            `— fix: raise --ring-buffer-size, and let the agent have CPU (it drains what the kernel queues)`,
        );
      }
      this.#lostSeen = lost;
      this.#lastLossNs = now;
    } else if (this.#losing && now - this.#lastLossNs >= LOSS_QUIET_NS) {
      this.#losing = false;
      this.log.warn(
        `the kernel has stopped losing records: ${lost - this.#lostAtStart} were lost in this loss, ${lost} since the start ` +
          `— fix: raise --ring-buffer-size (now ${this.ringBytes} bytes), and let the agent have CPU`,
      );
    }
  }

  /** Says on stderr when the kernel skips the probe's runs (skipNotices). */
  #watchSkips(): void {
    const skipped = this.probe.runsNotMade();
    const seen = this.#skipsSeen;
    if (skipped === null || seen === null || totalSkipped(skipped) <= totalSkipped(seen)) return;
    const now = this.clock.nowMonotonicNs();
    const spellBegins = this.#lastSkipNs === null || now - this.#lastSkipNs >= SKIPS_QUIET_NS;
    if (spellBegins) this.#endSkipsTold = false;
    for (const notice of skipNotices(seen, skipped, spellBegins, this.#endSkipsTold, standInsOut(this.probe))) this.log.warn(notice);
    if (skipped.socketEnd > seen.socketEnd) this.#endSkipsTold = true;
    this.#skipsSeen = skipped;
    this.#lastSkipNs = now;
  }

  /**
   * Takes out of the socket table and the hash map the states of connections closed without either
   * program seeing it, so that they are counted (closes_missed) and said on stderr; with socket
   * storage they go with their socket, uncounted. `quiet`: at stop, whose summary says it.
   */
  #sweepStates(quiet = false): void {
    if (this.probe.stateKeeping === "socket storage") return;
    const before = this.probe.counters().closesMissed;
    this.probe.reportOpenConnections(() => undefined);
    const found = this.probe.counters().closesMissed - before;
    if (found > 0 && !quiet) {
      this.log.warn(`${found} connections closed without their close reaching the probe (found in its table or hash map): they have no close line`);
    }
  }

  /** NAT translations the conntrack hook saw; 0 while it is not attached. */
  get conntrackTranslations(): number {
    return this.#conntrack?.hook?.translations() ?? 0;
  }

  counters(): AgentCounters {
    return {
      ...this.probe.counters(),
      recordsRead: this.#recordsRead,
      recordsInvalid: this.#recordsInvalid,
      linesWritten: this.sink.linesWritten,
      linesDropped: this.sink.linesDropped,
    };
  }

  /** Detaches, writes the last lines, frees everything. */
  async stop(): Promise<void> {
    for (const timer of this.#timers.splice(0)) clearInterval(timer);
    if (this.#drainTimer !== null) clearTimeout(this.#drainTimer);
    this.#drainTimer = null;
    // while the programs still run: a close after they go would look like one they missed
    this.#sweepStates(true);
    this.control.detach();
    this.probe.detach();
    this.#drain();
    await this.#stopNaming();
    this.#conntrack?.stop();
    const counters = this.counters();
    this.probe.close();
    await this.sink.close();
    await this.metricsAddress.close();
    // Lines the sink still held when the counters were read are out (or dropped) by now.
    counters.linesWritten = this.sink.linesWritten;
    counters.linesDropped = this.sink.linesDropped;
    await this.control.stop();
    this.log.info(
      `stopped: ${counters.recordsRead} records read, ${counters.linesWritten} lines written, ` +
        `${counters.recordsLost} records lost in the kernel, ${counters.linesDropped} lines dropped`,
    );
    if (counters.recordsLost > 0) this.log.warn(`${counters.recordsLost} records were lost in the kernel (ring buffer full): raise --ring-buffer-size`);
    if (counters.trackingFailed > 0) this.log.warn(`${counters.trackingFailed} connections could not be tracked from their start: raise --max-connections`);
    if (counters.closesAtDestroy > 0) {
      this.log.info(`${counters.closesAtDestroy} closes the kernel skipped the probe for were written when their socket ended`);
    }
    if (counters.closesMissed > 0) {
      this.log.warn(
        `${counters.closesMissed} connections closed without their close reaching the probe (the kernel skipped it, or ran neither of its programs, under bursts of closes): they have no close line`,
      );
    }
  }
}

/**
 * What the agent says on stderr about the probe's runs the kernel skipped between two readings
 * (its recursion guard: README, "A burst of closes"): once when a spell of skips begins (no skip
 * for SKIPS_QUIET_NS before), and once in a spell when the socket-end program's runs are skipped
 * too, since a close whose socket-end run is also skipped has no line. `standInsOut`: why no
 * stand-ins are attached, where they might have made those runs (standInsOut()), or null.
 */
export function skipNotices(
  seen: RunsSkipped,
  now: RunsSkipped,
  spellBegins: boolean,
  endSkipsTold: boolean,
  standInsOut: string | null,
): string[] {
  const notices: string[] = [];
  if (spellBegins) {
    const skipped = totalSkipped(now) - totalSkipped(seen);
    notices.push(
      `the kernel is skipping runs of the probe (${skipped} so far: the probe was already running on that CPU, interrupted by a softirq or, ` +
        `where tracepoints run their programs preemptibly as on Linux 7, preempted; as under bursts of closes); a close it skips is written when its socket ends, ` +
        `a start it skips makes start_time unknown${standInsOut === null ? "" : `; ${standInsOut}`}`,
    );
  }
  if (!endSkipsTold && now.socketEnd > seen.socketEnd) {
    notices.push(
      `the kernel skipped ${now.socketEnd - seen.socketEnd} runs of the probe at a socket's end too: a socket whose close was skipped as well ` +
        `has no close line (README, "A burst of closes")`,
    );
  }
  return notices;
}

/**
 * The pauses between drains for a ring of `ringBytes`: after a drain that read records (busyMs), and
 * the longest while none come (idleMs). A ring that a burst at BURST_RECORDS_PER_MS would half fill
 * sooner than these gets shorter ones, down to MIN_DRAIN_INTERVAL_MS.
 */
export function drainPauses(ringBytes: number): { busyMs: number; idleMs: number } {
  const halfFillMs = ringBytes / 2 / RING_RECORD_BYTES / BURST_RECORDS_PER_MS;
  const busyMs = Math.max(MIN_DRAIN_INTERVAL_MS, Math.min(DRAIN_INTERVAL_MS, halfFillMs));
  return { busyMs, idleMs: Math.max(busyMs, Math.min(IDLE_DRAIN_INTERVAL_MS, halfFillMs)) };
}

/**
 * Runs until SIGINT, SIGTERM or the end of --duration; returns the exit code. The signals are
 * heard from the start: one that comes while the agent starts (its lock already taken) stops it
 * cleanly once started, instead of killing it half-loaded.
 */
export async function runAgent(options: RunOptions): Promise<number> {
  const signalled = untilStopped();
  const agent = await Agent.start(options);
  const ends: Promise<OutputEnd | void>[] = [signalled, agent.outputEnded];
  if (options.duration !== undefined) ends.push(Bun.sleep(options.duration * 1000));
  const end = await Promise.race(ends);
  await agent.stop();
  if (end !== undefined && end.error !== null) throw end.error;
  return 0;
}

/** How a run ends when stdout fails: its reader gone (EPIPE) is a normal end, anything else an error. */
export interface OutputEnd {
  error: OutputError | null;
}

/** stdout could not be written (a full disk, an I/O error). */
export class OutputError extends ExitError {
  override name = "OutputError";
  override readonly context = "cannot write access-log lines to stdout";
}

/** Why no stand-ins are attached where they might be needed: they could not attach, or the preemption probe could not tell (null otherwise). */
export function standInsOut(probe: Pick<Probe, "standIns" | "standInsUnattached" | "tracepointPreemption">): string | null {
  if (probe.standIns) return null;
  if (probe.standInsUnattached !== null) return `the stand-in programs could not be attached (${probe.standInsUnattached.reason})`;
  if (probe.tracepointPreemption.answer !== "unknown") return null;
  return `whether this kernel's tracepoints run programs preemptibly is unknown (${probe.tracepointPreemption.why}), so no stand-in programs are attached`;
}

/** What the start-up line says of the stand-ins (bpf/accesslog.bpf.c), when they are attached. */
function standInsText(probe: Probe): string {
  return probe.standIns ? `, stand-in programs attached: ${standInsWanted(probe)}` : "";
}

/** Why the agent attaches the stand-ins. */
function standInsWanted(probe: Probe): string {
  return probe.tracepointPreemption.answer === "yes" ? "this kernel's tracepoints run programs preemptibly" : "asked for";
}

/** Where the start-up line says the kernel keeps connection state. */
function keepingText(probe: Probe, maxConnections: number): string {
  if (probe.stateKeeping === "socket storage") return "connection state kept with each socket";
  const table = probe.stateKeeping === "socket table" ? ` (in a table of ${probe.tableEntries} entries, then a hash map)` : "";
  return `up to ${maxConnections} open connections tracked${table}`;
}

function outputEnd(error: unknown, log: Logger): OutputEnd {
  const code = (error as NodeJS.ErrnoException).code;
  if (code === "EPIPE") {
    log.info("stdout's reader has gone (EPIPE): stopping");
    return { error: null };
  }
  const why = error instanceof Error ? error.message : String(error);
  return { error: new OutputError(`${why}: the agent stopped; the lines it could not write are counted in "lines dropped"`) };
}

// ── /metrics ─────────────────────────────────────────────────────────────────

/**
 * The TCP metrics' address (--metrics-addr): listening while the metrics are on, closed while
 * they are off (so a node's port 15020 is taken only by an agent that serves metrics).
 */
class MetricsAddress {
  #server: HttpServer | null = null;

  constructor(
    private readonly address: HostPort | null,
    private readonly metrics: TcpMetrics,
    private readonly log: Logger,
  ) {}

  /** Listens (at once; throws ListenError when it cannot) or stops listening. */
  serve(on: boolean): Promise<void> {
    if (on && this.#server === null && this.address !== null) {
      // Read-only: no access gate (a POST is answered 405).
      this.#server = HttpServer.listen(this.address, METRICS_LISTENER, (method, url, _body, headers) => handleMetricsRequest(() => this.metrics.render(), method, url, headers.get("accept-encoding")), { log: this.log });
      this.log.info(`TCP metrics on http://${this.#server.where}/status/metric (and /metrics)`);
    } else if (!on && this.#server !== null) {
      this.log.info(`TCP metrics off: no longer serving http://${this.#server.where}/status/metric`);
      return this.close();
    }
    return Promise.resolve();
  }

  /** Stops listening (the agent stops). */
  close(): Promise<void> {
    const server = this.#server;
    this.#server = null;
    return server === null ? Promise.resolve() : server.stop().catch(() => undefined);
  }
}

/** Whether a pod or a Service the TCP metrics name still exists; null without a Kubernetes source. */
function kubeView(pods: PodSource | null, cluster: ClusterIndex | null): KubeView | null {
  if (pods === null && cluster === null) return null;
  return {
    hasPod: (key) => pods?.index.hasPod(key) === true || cluster?.hasPod(key) === true,
    hasService: (key) => cluster?.hasService(key) === true,
  };
}

/**
 * What the agent, its pod sources and its naming of lines count, read at every scrape (after the
 * control's own metrics, admin/control.ts). The kubelet's metrics come with its pod source, the
 * API server's with its source.
 */
function registerMetrics(registry: MetricsRegistry, agent: Agent, probe: Probe, tcpMetrics: TcpMetrics, pods: PodSource | null, api: ApiSource | null, enricher: Enricher | null): void {
  const metric = registry.add.bind(registry);
  const counter = (name: string, help: string, read: (c: AgentCounters) => number) => metric(name, "counter", help, () => read(agent.counters()));
  counter("records_read_total", "Records read from the kernel (close reports and periodic reports).", (c) => c.recordsRead);
  counter("lines_written_total", "Access-log lines written to stdout.", (c) => c.linesWritten);
  counter("lines_dropped_total", "Access-log lines dropped because stdout was not read fast enough or could not be written.", (c) => c.linesDropped);
  metric("lines_filtered_total", "counter", "Reports not written (to any sink) because a filter dropped them (--port, --namespace, ... or PUT /filters), by the first filter that did, here or in the kernel.", () => {
    const inKernel: Partial<Record<FilterName, number>> = probe.filterDrops();
    return FILTER_ORDER.map((name) => ({ labels: { filter: filterLabel(name) }, value: agent.filtered[name] + (inKernel[name] ?? 0) }));
  });
  metric("lines_filtered_in_kernel_total", "counter", "Of lines_filtered_total: connections the kernel dropped itself (no record, no work here), by the first filter that did.", () => {
    const inKernel = probe.filterDrops();
    return KERNEL_FILTERS.map((name) => ({ labels: { filter: filterLabel(name) }, value: inKernel[name] }));
  });
  counter("kernel_records_lost_total", "Records the kernel could not queue (ring buffer full).", (c) => c.recordsLost);
  counter("records_malformed_total", "Records skipped because their size or content was wrong.", (c) => c.recordsInvalid);
  counter("connections_untracked_total", "Connections the kernel could not track from their start (connections map full).", (c) => c.trackingFailed);
  counter(
    "kernel_closes_missed_total",
    "Connections whose close never reached the probe (the kernel skips it under bursts of closes), so they have no close line; found when the socket is reused or by a periodic report.",
    (c) => c.closesMissed,
  );
  counter(
    "kernel_closes_at_end_total",
    "Closes the kernel skipped the probe for (a softirq interrupted it on the same CPU, or a task was preempted in it where tracepoints are preemptible), written when their socket ended: they have their close line.",
    (c) => c.closesAtDestroy,
  );
  if (probe.runsSkipped() !== null) {
    metric(
      "kernel_runs_skipped_total",
      "counter",
      "Runs of the probe the kernel skipped because it was already running on that CPU (its programs' recursion_misses; Linux 5.12 and later).",
      () => {
        const skipped = probe.runsSkipped();
        return skipped === null ? 0 : totalSkipped(skipped);
      },
    );
  }
  metric("kernel_stand_ins_attached", "gauge", "1 where the stand-in programs are attached (tracepoints that run their programs preemptibly, as on Linux 7), else 0.", () =>
    probe.standIns ? 1 : 0,
  );
  metric(
    "kernel_runs_stood_in_total",
    "counter",
    "Runs of the probe the kernel skipped that a stand-in program made instead (where they are attached): their work was done.",
    () => totalSkipped(probe.runsStoodIn()),
  );
  if (pods !== null && enricher !== null) {
    metric("kubelet_refreshes_total", "counter", "Pod lists read from the kubelet.", () => pods.stats.refreshes);
    metric("kubelet_refresh_failures_total", "counter", "Pod list reads that failed (unreachable, timeout, TLS, 401, 403, invalid).", () => pods.stats.failures);
    metric("kubelet_pods_indexed", "gauge", "Pods in the current index.", () => pods.index.podCount);
    metric("enrichment_misses_total", "counter", "Lines whose local end was not in the pod index, held for a refresh of the pod list.", () => enricher.stats.held);
  }
  const series = (kind: "workload" | "service" | "connection") => () => tcpMetrics.counts[kind];
  metric("tcp_metric_workload_series", "gauge", "Series of the workload TCP metrics now (each of its 7 metrics has one per series).", series("workload"));
  metric("tcp_metric_service_series", "gauge", "Series of the service TCP metrics now (each of its 5 metrics has one per series).", series("service"));
  metric("tcp_metric_connection_series", "gauge", "Series of the per-connection TCP metrics now (each of its 4 metrics has one per series).", series("connection"));
  metric("tcp_metric_series_dropped_total", "counter", "Series the TCP metrics dropped: a pod or Service they name was gone, or their address idle, for --metrics-grace.", () => tcpMetrics.dropped);
  if (api !== null) {
    metric("api_lists_total", "counter", "Complete lists read from the API server (every kind, every page).", () => api.stats.lists);
    metric("api_watches_total", "counter", "Watches opened on the API server.", () => api.stats.watches);
    metric("api_watch_events_total", "counter", "Watch events received (ADDED, MODIFIED, DELETED, BOOKMARK, ERROR).", () => api.stats.events);
    metric("api_watch_expired_total", "counter", "Watches that expired (410) and were followed by a new list.", () => api.stats.expired);
    metric("api_failures_total", "counter", "Requests to the API server that failed (unreachable, timeout, TLS, 401, 403, invalid).", () => api.stats.failures);
    metric("api_services", "gauge", "Services known from the API server.", () => api.index.counts.services);
    metric("api_endpoint_slices", "gauge", "EndpointSlices known from the API server.", () => api.index.counts.endpointSlices);
    metric("api_pods", "gauge", "Pods indexed from the API server (all nodes).", () => api.index.counts.pods);
    if (enricher !== null) {
      metric("clusterip_backends_learned_total", "counter", "OUTBOUND lines to a ClusterIP whose backend was learned (from the kernel's connection tracking, or from the INBOUND line).", () => enricher.stats.backendsLearned);
      metric("clusterip_backends_from_conntrack_total", "counter", "OUTBOUND lines to a ClusterIP whose backend was learned from the kernel's connection tracking.", () => enricher.stats.backendsFromConntrack);
      metric("conntrack_translations_total", "counter", "TCP connections whose destination the kernel's NAT changed, seen by the conntrack hook (0 while it is not attached).", () => agent.conntrackTranslations);
      metric("clusterip_lines_held_total", "counter", "OUTBOUND lines to a ClusterIP held to wait for their INBOUND line.", () => enricher.stats.heldForBackend);
    }
  }
}

/** What the OTLP exporter counts (src/sink/otlp/exporter.ts), after the agent's own. */
function registerOtlpMetrics(registry: MetricsRegistry, stats: Readonly<ExporterStats>): void {
  const metric = (name: string, type: MetricType, help: string, read: () => number | Sample[]) => registry.add(`otlp_${name}`, type, help, read);
  metric("records_queued", "gauge", "Reports accepted for the OTLP collector and not yet delivered or dropped (at most --otlp-queue-size).", () => stats.queued);
  metric("records_sent_total", "counter", "Reports the OTLP collector accepted.", () => stats.sent);
  metric("records_dropped_total", "counter", "Reports not delivered to the OTLP collector: the queue was full, the collector refused them, or they were still queued when the flush at stop ran out.", () => [
    { labels: { reason: "queue_full" }, value: stats.droppedQueueFull },
    { labels: { reason: "rejected" }, value: stats.droppedRejected },
    { labels: { reason: "stop" }, value: stats.droppedAtStop },
  ]);
  metric("requests_total", "counter", "Requests the OTLP collector answered with success.", () => stats.requests);
  metric("request_failures_total", "counter", "Requests to the OTLP collector that failed: retried (429, 502, 503, 504, network, timeout) or refused.", () => stats.requestFailures);
}
