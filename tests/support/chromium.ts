/**
 * Headless Chromium for the tests: finding it, its flags, and a page driven over the DevTools
 * protocol (chromium --remote-debugging-port on 127.0.0.1, one WebSocket from Deno).
 */
import { join } from "node:path";
import { scratchDir, waitFor } from "./helpers.ts";

export async function findChromium(): Promise<string | null> {
  for (const name of ["chromium", "chromium-browser", "google-chrome"]) {
    const found = await new Deno.Command("which", { args: [name], stdout: "piped", stderr: "null" }).output();
    if (found.success) return new TextDecoder().decode(found.stdout).trim();
  }
  return null;
}

export const CHROMIUM_FLAGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

/** A page in a headless Chromium the test started (stopped by `close`, by its pid). */
export class BrowserPage {
  private nextId = 1;
  private readonly pending = new Map<number, (message: Record<string, unknown>) => void>();
  /** uncaught exceptions and console errors of the page */
  readonly errors: string[] = [];

  private constructor(
    private readonly process: Deno.ChildProcess,
    private readonly profile: string,
    private readonly socket: WebSocket,
  ) {
    socket.onmessage = (event) => {
      const message = JSON.parse(event.data);
      if (message.id) this.pending.get(message.id)?.(message);
      if (message.method === "Runtime.exceptionThrown") {
        this.errors.push(
          message.params.exceptionDetails.exception?.description ?? message.params.exceptionDetails.text,
        );
      }
    };
  }

  static async open(browser: string, url: string): Promise<BrowserPage> {
    const profile = await scratchDir({ prefix: "facegan-chromium-" });
    const process = new Deno.Command(browser, {
      args: [
        ...CHROMIUM_FLAGS,
        `--user-data-dir=${profile}`,
        "--remote-debugging-address=127.0.0.1",
        "--remote-debugging-port=0",
        "--window-size=900,1000",
        url,
      ],
      stdout: "null",
      stderr: "null",
    }).spawn();
    // Chromium writes the port it took into the profile.
    const portFile = join(profile, "DevToolsActivePort");
    await waitFor(async () => (await Deno.readTextFile(portFile).catch(() => "")).includes("\n"), 30_000, portFile);
    const port = (await Deno.readTextFile(portFile)).split("\n")[0];
    let target: { webSocketDebuggerUrl: string } | undefined;
    await waitFor(
      async () => {
        const targets = await (await fetch(`http://127.0.0.1:${port}/json/list`)).json();
        target = targets.find((t: { type: string; url: string }) => t.type === "page" && t.url === url);
        return target !== undefined;
      },
      30_000,
      "the page's DevTools target",
    );
    const socket = new WebSocket(target!.webSocketDebuggerUrl);
    await new Promise((resolve, reject) => {
      socket.onopen = resolve;
      socket.onerror = reject;
    });
    const page = new BrowserPage(process, profile, socket);
    await page.send("Runtime.enable");
    return page;
  }

  send(method: string, params: Record<string, unknown> = {}): Promise<Record<string, unknown>> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, (message) => {
        this.pending.delete(id);
        if (message.error) reject(new Error(`${method}: ${JSON.stringify(message.error)}`));
        else resolve(message.result as Record<string, unknown>);
      });
      this.socket.send(JSON.stringify({ id, method, params }));
    });
  }

  /** The value of a JS expression in the page (promises awaited). */
  async evaluate<T>(expression: string): Promise<T> {
    const result = await this.send("Runtime.evaluate", { expression, awaitPromise: true, returnByValue: true });
    const details = result.exceptionDetails as { text: string } | undefined;
    if (details) throw new Error(`${expression}: ${JSON.stringify(details)}`);
    return (result.result as { value: T }).value;
  }

  /** Wait until the expression is truthy in the page. */
  async waitFor(expression: string, timeoutMs: number): Promise<void> {
    await waitFor(async () => Boolean(await this.evaluate(expression)), timeoutMs, expression);
  }

  /** A real mouse click (pressed and released) at the centre of the element. */
  async click(selector: string): Promise<void> {
    const [x, y] = await this.evaluate<[number, number]>(
      `(() => { const r = document.querySelector(${JSON.stringify(selector)}).getBoundingClientRect();
        return [r.x + r.width / 2, r.y + r.height / 2]; })()`,
    );
    for (const type of ["mousePressed", "mouseReleased"]) {
      await this.send("Input.dispatchMouseEvent", { type, x, y, button: "left", clickCount: 1 });
    }
  }

  async screenshot(): Promise<Uint8Array> {
    const { data } = await this.send("Page.captureScreenshot", { format: "png" }) as { data: string };
    return Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
  }

  async close(): Promise<void> {
    this.socket.close();
    this.process.kill("SIGTERM");
    await this.process.status;
    await Deno.remove(this.profile, { recursive: true }).catch(() => {});
  }
}
