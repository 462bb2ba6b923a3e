/**
 * A TCP relay, as the container runtime is for `kubectl port-forward` (and so for kmeshctl): it
 * accepts on one address and, for each connection, opens one of its own to another and copies
 * both ways. Run it as root inside the agent's network namespace: the agent then sees a root peer
 * on 127.0.0.1, whoever connected to the relay.
 *
 *   bun test/e2e/forwarder.ts <listen host:port> <to host:port>
 *
 * Prints `{"listening":<port>}` once it accepts, then `{"upstreamPort":<n>}` for each connection
 * it opens (its local port: how the agent names it).
 */
import net from "node:net";

const split = (text: string) => {
  const colon = text.lastIndexOf(":");
  return { host: text.slice(0, colon), port: Number(text.slice(colon + 1)) };
};
const [listen, to] = [split(process.argv[2] ?? ""), split(process.argv[3] ?? "")];

const server = net.createServer((client) => {
  const upstream = net.connect(to.port, to.host, () => console.log(JSON.stringify({ upstreamPort: upstream.localPort })));
  client.pipe(upstream);
  upstream.pipe(client);
  client.on("error", () => upstream.destroy());
  upstream.on("error", () => client.destroy());
});
server.listen(listen.port, listen.host, () => console.log(JSON.stringify({ listening: (server.address() as net.AddressInfo).port })));
