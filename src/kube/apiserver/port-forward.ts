// A pod's port, reached through the API server's port-forward over WebSocket, behind a local TCP
// address: what `kubectl port-forward` and kmeshctl do, without SPDY. The request is
// `GET /api/v1/namespaces/<ns>/pods/<pod>/portforward?ports=<port>` upgraded to a WebSocket with
// the subprotocol `v4.channel.k8s.io`. Each binary message starts with a channel byte: 0 carries
// the port's data both ways, 1 the server's error text; the server's first message on each channel
// is the port, two bytes little-endian. One WebSocket is one TCP connection to the port.
import type { TCPSocketListener } from "bun";
import type { HostPort } from "../../address.ts";
import type { ApiServerConfig, Credentials } from "./client.ts";

export const PORT_FORWARD_PROTOCOL = "v4.channel.k8s.io";
const DATA = 0;
const ERROR = 1;

interface Pipe {
  ws: WebSocket;
  /** local bytes held until the port is confirmed */
  pending: Uint8Array[];
  /** port frames seen on the data and the error channel */
  confirmed: [boolean, boolean];
}

export class PortForward {
  readonly #listener: TCPSocketListener<Pipe | undefined>;
  /** The last thing the API server or the kubelet said went wrong (an HTTP status, the error channel). */
  problem: string | null = null;

  private constructor(listener: TCPSocketListener<Pipe | undefined>) {
    this.#listener = listener;
  }

  /** The local address whose connections reach the pod's port. */
  get address(): HostPort {
    return { host: "127.0.0.1", port: this.#listener.port };
  }

  /**
   * Listens on a free local port; each connection opens its own port-forward to `namespace/pod:port`,
   * sending the API client's `credentials` with the upgrade.
   */
  static open(config: ApiServerConfig, credentials: Credentials, namespace: string, pod: string, port: number): PortForward {
    const base = config.server.replace(/^http/, "ws");
    const url = `${base}/api/v1/namespaces/${encodeURIComponent(namespace)}/pods/${encodeURIComponent(pod)}/portforward?ports=${port}`;
    let forward: PortForward | null = null;
    const say = (problem: string) => {
      if (forward !== null) forward.problem = problem;
    };
    const listener = Bun.listen<Pipe | undefined>({
      hostname: "127.0.0.1",
      port: 0,
      socket: {
        open(socket) {
          const ws = new WebSocket(url, { headers: credentials.headers, protocols: [PORT_FORWARD_PROTOCOL], tls: credentials.tls } as unknown as string[]);
          ws.binaryType = "arraybuffer";
          const pipe: Pipe = { ws, pending: [], confirmed: [false, false] };
          socket.data = pipe;
          ws.onmessage = (event) => {
            const frame = new Uint8Array(event.data as ArrayBuffer);
            const channel = frame[0];
            if (channel !== DATA && channel !== ERROR) return;
            if (!pipe.confirmed[channel]) {
              // the port, little-endian: the stream is for it
              pipe.confirmed[channel] = true;
              if (channel === DATA) for (const bytes of pipe.pending.splice(0)) ws.send(withChannel(bytes));
              return;
            }
            if (channel === DATA) socket.write(frame.subarray(1));
            else if (frame.length > 1) say(new TextDecoder().decode(frame.subarray(1)));
          };
          ws.onerror = (event) => {
            const message = (event as unknown as { message?: string }).message ?? "the WebSocket failed";
            const status = /Expected 101 status code: (\d+)/.exec(message)?.[1];
            say(status === undefined ? message : `the API server answered the port-forward with HTTP ${status}`);
          };
          ws.onclose = () => socket.end();
        },
        data(socket, bytes) {
          const pipe = socket.data;
          if (pipe === undefined) return;
          const copy = new Uint8Array(bytes);
          if (pipe.ws.readyState === WebSocket.OPEN && pipe.confirmed[DATA]) pipe.ws.send(withChannel(copy));
          else pipe.pending.push(copy);
        },
        close(socket) {
          socket.data?.ws.close();
        },
        error(socket) {
          socket.data?.ws.close();
        },
      },
    });
    forward = new PortForward(listener);
    return forward;
  }

  close(): void {
    this.#listener.stop(true);
  }
}

function withChannel(bytes: Uint8Array): Uint8Array {
  const frame = new Uint8Array(bytes.length + 1);
  frame[0] = DATA;
  frame.set(bytes, 1);
  return frame;
}
