// `host:port` for the admin API: an IPv4 address, a bracketed IPv6 address or
// a host name, and a port from 1 to 65535. Kmesh binds localhost:15200; so do
// we by default, since the API changes what the node records.
import { isIPv4, isIPv6 } from "node:net";

export const DEFAULT_ADMIN_ADDR = "127.0.0.1:15200";

export interface AdminAddress {
  /** Without brackets, as Bun.serve and fetch's URL need it. */
  host: string;
  port: number;
}

const HOST_NAME = /^(?=.{1,253}$)[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)*$/;

/** Parses `host:port` / `[v6]:port`; undefined when it is not one. */
export function parseAdminAddress(text: string): AdminAddress | undefined {
  const match = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(text);
  if (!match) return undefined;
  const port = Number(match[3]);
  if (port < 1 || port > 65_535) return undefined;
  const v6 = match[1];
  if (v6 !== undefined) return isIPv6(v6) ? { host: v6, port } : undefined;
  const host = match[2]!;
  if (isIPv4(host) || (HOST_NAME.test(host) && !/^[\d.]+$/.test(host))) return { host, port };
  return undefined;
}

/** `host:port`, bracketing IPv6. */
export function formatAdminAddress(address: AdminAddress): string {
  return isIPv6(address.host) ? `[${address.host}]:${address.port}` : `${address.host}:${address.port}`;
}

export function adminUrl(address: AdminAddress, path: string): string {
  return `http://${formatAdminAddress(address)}${path}`;
}
