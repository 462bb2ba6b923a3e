// The Agent owns everything that runs: the runtime control (single-agent
// lock, switches, periodic reports, admin API), the clock, the kernel probe
// and the line sink. It starts them in that order and stops them in reverse,
// from one place. The event loop is never blocked: a timer drains the ring buffer
// and hands lines to the non-blocking sink.
import { JSON_LINES, KMESH_TEXT } from "./accesslog/format.ts";
import { toAccessRecord } from "./accesslog/record.ts";
import { LineSink } from "./accesslog/sink.ts";
import { createClock, type Clock, toNs } from "./kernel/clock.ts";
import { Probe, type ProbeCounters } from "./kernel/probe.ts";
import { RecordError, RECORD_SIZE, RecordView } from "./kernel/record.ts";
import { DEFAULT_MAX_BUFFERED_OUTPUT_BYTES, type RunOptions } from "./options.ts";
import { registerAgentMetrics, registerNamingMetrics } from "./admin/agent-metrics.ts";
import { AgentControl } from "./admin/control.ts";
import { outputsOf, startupSwitches } from "./admin/switches.ts";
import { createLogger, type Logger } from "./log.ts";
import { Enricher, lineFilter } from "./accesslog/enrich.ts";
import { resolveKubeletSettings, settingsNotices } from "./kube/config.ts";
import { createPodSource, type PodSource } from "./kube/pod-source.ts";
import { createApiSource, holdNsOf, NO_KUBELET } from "./kube/api-start.ts";
import type { ApiSource } from "./kube/api-source.ts";
import { registerApiMetrics } from "./kube/api-metrics.ts";

export type AgentOptions = RunOptions;


/** How often the ring buffer is drained. The kernel does not wake us per record. */
const DRAIN_INTERVAL_MS = 10;
/** How often the monotonic → wall clock offset is measured again (NTP steps). */
const RECALIBRATE_INTERVAL_MS = 60_000;

export class Agent {
  readonly #clock: Clock;
  readonly #probe: Probe;
  readonly #sink: LineSink;
  readonly #control: AgentControl;
  readonly #log: Logger;
  #timers: Timer[] = [];
  /** The pod list and the names it gives lines; null with --no-kubelet. */
  #pods: PodSource | null = null;
  /** Services and every pod, from the API server; null when off. */
  #api: ApiSource | null = null;
  #enricher: Enricher | null = null;
  #recordsRead = 0;
  #recordsInvalid = 0;
  /** Reads each ring-buffer record where it lies (no object per record). */
  readonly #record = new RecordView();
  #lastInvalid = "";

  private constructor(clock: Clock, probe: Probe, sink: LineSink, control: AgentControl, log: Logger, options: AgentOptions) {
    this.#control = control;
    this.#log = log;
    this.#clock = clock;
    this.#probe = probe;
    this.#sink = sink;
  }

  static async start(options: AgentOptions, log: Logger = createLogger(options.logLevel)): Promise<Agent> {
    const switches = startupSwitches(options);
    if (!switches.ok) throw new Error(switches.message); // cli.ts already refused it
    // First: a second agent is refused before it loads anything.
    const control = await AgentControl.start({
      switches: switches.switches,
      reportIntervalMs: options.reportInterval * 1000,
      adminAddr: options.adminAddr,
      lockFile: options.lockFile,
      log,
    });
    const clock = createClock();
    // Before the probe: the first pod list is read while the BPF object loads.
    const kubelet = resolveKubeletSettings(options);
    if (kubelet !== null) for (const notice of settingsNotices(kubelet)) log.warn(notice);
    const pods = kubelet === null ? null : createPodSource(kubelet, () => clock.nowMonotonicNs(), log);
    pods?.start();
    let api: ApiSource | null = null;
    let probe: Probe;
    try {
      api = createApiSource(options, log);
      api?.start();
      probe = await Probe.open({
        ringBufferBytes: options.ringBufferSize,
        maxConnections: options.maxConnections,
        libbpfPath: options.libbpf,
      });
    } catch (error) {
      pods?.stop();
      await api?.stop();
      await control.stop();
      throw error;
    }
    const sink = new LineSink(Bun.stdout.writer(), options.output === "json" ? JSON_LINES : KMESH_TEXT, {
      maxBufferedBytes: options.maxBufferedOutput ?? DEFAULT_MAX_BUFFERED_OUTPUT_BYTES,
      notice: (message) => log.warn(message),
    });
    const agent = new Agent(clock, probe, sink, control, log, options);
    registerAgentMetrics(control.metrics, () => agent.counters());
    // Lines are named with the kubelet, the API server, or both.
    const enricher = pods === null && api === null ? null : agent.#nameLines(pods, api, holdNsOf(kubelet), options);
    if (pods !== null && enricher !== null) {
      registerNamingMetrics(control.metrics, () => ({
        refreshes: pods.stats.refreshes,
        refreshFailures: pods.stats.failures,
        podsIndexed: pods.index.podCount,
        linesHeld: enricher.stats.held,
        linesFiltered: enricher.stats.filtered,
      }));
    }
    if (api !== null) registerApiMetrics(control.metrics, api, enricher);
    control.attach({
      setEmitEnabled: (enabled) => probe.setEmitEnabled(enabled),
      reportOpenConnections: () => agent.#reportOpenConnections(),
      countOpenConnections: () => probe.reportOpenConnections(() => undefined),
    });
    // The kernel writes from the moment it is attached: what it wrote before
    // the switches said otherwise is not for the output.
    if (!outputsOf(control.switches()).kernelEmit) probe.drain(() => undefined);
    log.info(
      `capturing TCP connections (libbpf ${probe.libbpfVersion} ${probe.libbpfOrigin}, ring buffer ${options.ringBufferSize} bytes, ` +
        `up to ${options.maxConnections} open connections tracked, ${probe.seededConnections} already open)`,
    );
    agent.#timers.push(
      setInterval(() => agent.#drain(), DRAIN_INTERVAL_MS),
      setInterval(() => clock.recalibrate(), RECALIBRATE_INTERVAL_MS),
    );
    return agent;
  }

  #onBatch = (view: DataView, count: number): void => {
    this.#recordsRead += count;
    for (let i = 0; i < count; i++) {
      try {
        const event = this.#record.select(view, i * RECORD_SIZE, RECORD_SIZE);
        const record = toAccessRecord(event, this.#clock);
        if (this.#enricher === null) this.#sink.add(record);
        else this.#enricher.accept(record, toNs(event.report));
      } catch (error) {
        if (!(error instanceof RecordError)) throw error;
        this.#invalidRecord(error.message);
      }
    }
    this.#enricher?.endBatch(this.#clock.nowMonotonicNs());
  };

  /** Lines get pod names from `pods`; a new pod's first lines may wait for it (accesslog/enrich.ts). */
  #nameLines(pods: PodSource | null, api: ApiSource | null, holdNs: number, options: AgentOptions): Enricher {
    const enricher = new Enricher({
      source: pods ?? NO_KUBELET,
      holdNs: pods === null ? 0 : holdNs,
      cluster: api?.index ?? null,
      pairHoldNs: holdNs,
      filter: lineFilter({ namespaces: options.namespace, excludeNamespaces: options.excludeNamespace, pods: options.pod }),
      emit: (record) => this.#sink.add(record),
    });
    if (pods !== null) {
      pods.onRefreshed = () => {
        enricher.release(this.#clock.nowMonotonicNs());
        this.#sink.flush();
      };
    }
    this.#pods = pods;
    this.#api = api;
    this.#enricher = enricher;
    return enricher;
  }

  /** Lets held lines go (each within its bound), then stops the pod source. */
  async #stopNaming(): Promise<void> {
    const enricher = this.#enricher;
    while (enricher !== null && enricher.holding > 0) {
      await Bun.sleep(DRAIN_INTERVAL_MS);
      enricher.release(this.#clock.nowMonotonicNs());
    }
    this.#pods?.stop();
    await this.#api?.stop();
  }

  /** Lines for every open connection, after what the kernel had queued before. */
  #reportOpenConnections(): number {
    this.#drain();
    const count = this.#probe.reportOpenConnections(this.#onBatch);
    this.#sink.flush();
    return count;
  }

  #invalidRecord(message: string): void {
    this.#recordsInvalid++;
    // One line per kind of bad record, not one per record.
    if (message !== this.#lastInvalid) {
      this.#lastInvalid = message;
      this.#log.warn(`skipped a malformed ring-buffer record (${message}); ${this.#recordsInvalid} skipped so far`);
    }
  }

  #drain(): void {
    // Held lines past their deadline go before anything newer (the order rule of enrich.ts).
    this.#enricher?.release(this.#clock.nowMonotonicNs());
    this.#probe.drain(this.#onBatch);
    this.#sink.flush();
  }

  counters(): ProbeCounters & { recordsRead: number; recordsInvalid: number; linesWritten: number; linesDropped: number } {
    return {
      ...this.#probe.counters(),
      recordsRead: this.#recordsRead,
      recordsInvalid: this.#recordsInvalid,
      linesWritten: this.#sink.linesWritten,
      linesDropped: this.#sink.linesDropped,
    };
  }

  /** Detaches, writes the last lines, frees everything. */
  async stop(): Promise<void> {
    for (const timer of this.#timers.splice(0)) clearInterval(timer);
    this.#control.detach();
    this.#probe.detach();
    this.#drain();
    await this.#stopNaming();
    const counters = this.counters();
    this.#probe.close();
    await this.#sink.close();
    // Lines the sink still held when the counters were read are out (or dropped) by now.
    counters.linesWritten = this.#sink.linesWritten;
    counters.linesDropped = this.#sink.linesDropped;
    await this.#control.stop();
    this.#log.info(
      `stopped: ${counters.recordsRead} records read, ${counters.linesWritten} lines written, ` +
        `${counters.recordsLost} records lost in the kernel, ${counters.linesDropped} lines dropped`,
    );
    if (counters.recordsLost > 0) this.#log.warn(`${counters.recordsLost} records were lost in the kernel (ring buffer full): raise --ring-buffer-size`);
    if (counters.trackingFailed > 0) this.#log.warn(`${counters.trackingFailed} connections could not be tracked from their start: raise --max-connections`);
    if (counters.closesMissed > 0) {
      this.#log.warn(
        `${counters.closesMissed} connections closed without their close reaching the probe (the kernel skips it under bursts of closes): they have no close line`,
      );
    }
  }
}

/** Runs until SIGINT, SIGTERM or the end of --duration; returns the exit code. */
export async function runAgent(options: AgentOptions): Promise<number> {
  const agent = await Agent.start(options, createLogger(options.logLevel));
  await new Promise<void>((resolve) => {
    const done = () => {
      process.off("SIGINT", done);
      process.off("SIGTERM", done);
      clearTimeout(timeout);
      resolve();
    };
    process.on("SIGINT", done);
    process.on("SIGTERM", done);
    const timeout = options.duration === undefined ? undefined : setTimeout(done, options.duration * 1000);
  });
  await agent.stop();
  return 0;
}
