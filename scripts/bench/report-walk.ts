// The kernel's part of a periodic report (and of the minute's sweep): one walk of every tracked
// connection, as `Probe.reportOpenConnections` makes it with a handler that does nothing, so that
// the figure is the system calls and the BPF runs alone, not the lines. For each way of keeping
// state (the socket table, then the hash map for what it cannot hold; the hash map alone) and each
// number of open loopback connections (held by connections.ts' holders, two sockets each): the
// walk's time (median, lowest and highest of --walks) and its CPU, user and system, a walk.
// The probe is loaded in this process, attached as the agent attaches it, and closed after each.
//
// --short (CI): 3 walks, with 0 and 200 connections.
//
//   bun scripts/bench/report-walk.ts [--walks 20] [--pairs 0,1000,20000] [--short]
import { type OpenConnections, openConnections } from "./connections.ts";
import { median, option, table } from "./common.ts";
import { Probe } from "../../src/kernel/probe.ts";

const short = process.argv.includes("--short");
const walks = option("walks", short ? 3 : 20);
const pairsAt = process.argv.indexOf("--pairs");
const pairsList = (pairsAt > 0 ? (process.argv[pairsAt + 1] ?? "") : short ? "0,200" : "0,1000,20000").split(",").map(Number);
const WAYS = ["socket-table", "hash-map"] as const;

const rows: string[][] = [];
for (const pairs of pairsList) {
  for (const way of WAYS) {
    const probe = await Probe.open({ ringBufferBytes: 8 << 20, maxConnections: 262_144, connectionState: way, nameAcceptCallers: false });
    let held: OpenConnections | null = null;
    try {
      held = pairs > 0 ? await openConnections(pairs) : null;
      probe.reportOpenConnections(() => undefined); // the first walk compiles the JavaScript side
      const ms: number[] = [];
      let reported = 0;
      const cpu = process.cpuUsage();
      for (let i = 0; i < walks; i++) {
        const started = performance.now();
        reported = probe.reportOpenConnections(() => undefined);
        ms.push(performance.now() - started);
      }
      const used = process.cpuUsage(cpu);
      rows.push([
        way,
        pairs.toLocaleString("en-US"),
        reported.toLocaleString("en-US"),
        `${median(ms).toFixed(2)} (${Math.min(...ms).toFixed(2)}-${Math.max(...ms).toFixed(2)})`,
        `${(used.user / 1000 / walks).toFixed(2)} / ${(used.system / 1000 / walks).toFixed(2)}`,
      ]);
    } finally {
      await held?.dispose();
      probe.close();
    }
  }
}
console.log(`the kernel's walk of the open connections, ${walks} walks each (load average ${(await Bun.file("/proc/loadavg").text()).split(" ").slice(0, 3).join(" ")})`);
console.log(table(["keeping", "connections open", "sockets reported", "ms a walk (median, range)", "CPU ms a walk, user / system"], rows));
