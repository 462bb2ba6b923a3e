// Which agents `accesslog`, `monitoring`, `status` and `filter` drive, from their flags and
// arguments: the one --admin-addr or --admin-socket names, this node's, or, with --kubeconfig or
// --in-cluster, every agent pod (or the one named). agents.ts reaches them.
import { parseHostPort } from "../address.ts";
import type { AdminTargetFlags } from "../admin/client.ts";
import { UsageError } from "../errors.ts";
import { flagsOf } from "../flags.ts";
import { DEFAULT_ADMIN_ADDR, DEFAULT_ADMIN_SOCKET, FLAGS, HostPortSchema, SocketPathSchema } from "../options.ts";

/** What the command line says to drive. */
export type AgentTarget =
  | { kind: "local"; flags: AdminTargetFlags }
  /** kubeconfig null: in-cluster; pod null: every agent pod */
  | { kind: "cluster"; kubeconfig: string | null; pod: string | null };

export type TargetFlags = AdminTargetFlags & { kubeconfig?: string | undefined; inCluster?: boolean | undefined };

/** The flags every client command takes. */
export const targetFlags = {
  ...flagsOf([
    [
      "adminAddr",
      {
        kind: "value",
        schema: HostPortSchema,
        read: parseHostPort,
        expected: "host:port, e.g. 127.0.0.1:15200 or [::1]:15200",
        missing: "host:port of a running agent, e.g. 127.0.0.1:15200",
        placeholder: "<host:port>",
        description: `The agent's admin API over TCP (default: its Unix socket ${DEFAULT_ADMIN_SOCKET} when this user may use it, else ${DEFAULT_ADMIN_ADDR})`,
      },
    ],
    [
      "adminSocket",
      {
        kind: "value",
        schema: SocketPathSchema,
        expected: "the absolute path of a running agent's Unix socket",
        placeholder: "<path>",
        description: `The agent's admin API on its Unix socket (default: ${DEFAULT_ADMIN_SOCKET}, when this user may use it)`,
      },
    ],
    ["kubeconfig", { ...FLAGS.kubeconfig, description: "Drive every agent pod of the DaemonSet (or the one named) through this kubeconfig's API server, by port-forward" }],
  ]),
  inCluster: { type: Boolean, description: "The same from a pod of the cluster, with its service account" },
};

/**
 * The agents a client command drives: with --kubeconfig or --in-cluster, every agent pod (or the
 * one named) through the API server; else the one --admin-addr or --admin-socket names, or this
 * node's (client.ts chooses when neither does).
 */
export function agentTarget(flags: TargetFlags, args: string[]): AgentTarget {
  const cluster = flags.kubeconfig !== undefined || flags.inCluster === true;
  if (flags.kubeconfig !== undefined && flags.inCluster === true) {
    throw new UsageError("--kubeconfig and --in-cluster contradict each other: give one of them");
  }
  if (flags.adminAddr !== undefined && flags.adminSocket !== undefined) {
    throw new UsageError("--admin-addr and --admin-socket both name the agent: give one of them");
  }
  const named = flags.adminAddr !== undefined ? "--admin-addr" : flags.adminSocket !== undefined ? "--admin-socket" : null;
  if (cluster && named !== null) {
    throw new UsageError(`${named} and --${flags.inCluster ? "in-cluster" : "kubeconfig"} contradict each other: ${named} names one agent, the other reaches the agent pods`);
  }
  const extra = args[cluster ? 1 : 0];
  if (extra !== undefined) {
    throw new UsageError(
      cluster
        ? `unexpected argument ${JSON.stringify(extra)} (name at most one agent pod)`
        : `unexpected argument ${JSON.stringify(extra)} (a pod name needs --kubeconfig or --in-cluster; without them, --admin-addr names the one agent)`,
    );
  }
  if (cluster) return { kind: "cluster", kubeconfig: flags.kubeconfig ?? null, pod: args[0] ?? null };
  return { kind: "local", flags: { adminAddr: flags.adminAddr, adminSocket: flags.adminSocket } };
}
