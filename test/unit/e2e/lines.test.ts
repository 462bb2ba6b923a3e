/** The e2e tests' line collector: what a failed wait says. */
import { expect, test } from "bun:test";
import { LineCollector } from "../../e2e/lines.ts";

function streamOf(text: string): ReadableStream<Uint8Array> {
  return new ReadableStream({
    start(controller) {
      controller.enqueue(new TextEncoder().encode(text));
      // left open, as a running agent's stdout
    },
  });
}

test("a timed-out wait for thousands of lines gives the count, its first matches and the context", async () => {
  const text = Array.from({ length: 3_000 }, (_, i) => `line ${i}\n`).join("");
  const lines = new LineCollector(streamOf(text), (line) => line, (line) => line);
  lines.setFailureContext(() => "\nstderr: the agent's last words");
  await lines.waitFor(() => true, 3_000); // every line read
  const error = await lines.waitFor((l) => l.startsWith("line"), 5_000, 20).catch((e: Error) => e);
  const message = (error as Error).message.split("\n");
  expect(message[0]).toBe("timed out after 20 ms waiting for 5000 line(s); 3000 of 5000 matched:");
  expect(message.slice(1, 3)).toEqual(["  line 0", "  line 1"]);
  expect(message.slice(20, 22)).toEqual(["  line 19", "  ... and 2980 more"]);
  expect(message.slice(22, 24)).toEqual(["last lines:", "  line 2995"]);
  expect(message.at(-1)).toBe("stderr: the agent's last words");
  expect(message).toHaveLength(1 + 21 + 1 + 5 + 1);
});
