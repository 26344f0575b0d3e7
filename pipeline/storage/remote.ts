/**
 * The HTTP remote cache, in Bazel's HTTP cache layout: `<url>/cas/<sha256>` holds a file's bytes
 * (GET, HEAD, PUT), `<url>/ac/<key>` a cache entry as JSON: its manifest and its run record. Any
 * server of that layout works: nginx's WebDAV module, bazel-remote (with
 * `--disable_http_ac_validation`, since our action entries are not Bazel's protobufs). Nothing the
 * server sends is trusted unchecked: an entry's manifest must hash to its output, every file to
 * its sha256. The credentials are sent in a header and appear in no message, log or lock.
 */
import { createHash } from "node:crypto";
import { entryOutput, type EntryState, type Manifest, manifestProblem, type RunInfo } from "./cache.ts";
import { UserError } from "../core/errors.ts";
import { envName, projectName, readEnv } from "../core/env.ts";

const FORMAT = "facegan-entry-1";

/** What `/ac/<key>` holds. */
export interface RemoteEntry {
  format: typeof FORMAT;
  manifest: Manifest;
  run: RunInfo | null;
}

/** The remote refused a request, is unreachable, or sent something that does not check out. */
export class RemoteError extends UserError {}

export class RemoteCache {
  /** why lookups stopped (the server could not be reached): the run goes on without it */
  private offline: string | null = null;
  /** lookups fail loudly instead (push and pull, which are about the remote) */
  strict = false;

  private constructor(
    /** without a trailing slash; safe to print (credentials never go into it) */
    readonly url: string,
    private readonly authorization: string | null,
    private readonly warn: (line: string) => void,
  ) {}

  /** The remote <PREFIX>REMOTE names, with <PREFIX>REMOTE_TOKEN (bearer) or <PREFIX>REMOTE_BASIC (user:password). */
  static fromEnv(warn: (line: string) => void): RemoteCache | null {
    const [REMOTE_ENV, TOKEN_ENV, BASIC_ENV] = [envName("REMOTE"), envName("REMOTE_TOKEN"), envName("REMOTE_BASIC")];
    const url = readEnv("REMOTE");
    if (!url) return null;
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch {
      throw new UserError(
        `${REMOTE_ENV} is not a URL; set it like ${REMOTE_ENV}=http://cache.example:8080/${projectName()}`,
      );
    }
    if (parsed.protocol !== "http:" && parsed.protocol !== "https:") {
      throw new UserError(`${REMOTE_ENV} must be an http:// or https:// URL`);
    }
    if (parsed.username || parsed.password) {
      throw new UserError(`${REMOTE_ENV} must not hold credentials; put them in ${BASIC_ENV}=user:password`);
    }
    const token = readEnv("REMOTE_TOKEN");
    const basic = readEnv("REMOTE_BASIC");
    if (token && basic) throw new UserError(`set one of ${TOKEN_ENV} and ${BASIC_ENV}, not both`);
    if (basic && !basic.includes(":")) throw new UserError(`${BASIC_ENV} must be user:password`);
    const authorization = token
      ? `Bearer ${token}`
      : basic
      ? `Basic ${btoa(String.fromCharCode(...new TextEncoder().encode(basic)))}`
      : null;
    return new RemoteCache(parsed.href.replace(/\/+$/, ""), authorization, warn);
  }

  /** The entry stored under `key`, checked; null when the remote has none. */
  async entry(key: string): Promise<RemoteEntry | null> {
    const response = await this.request("GET", `ac/${key}`);
    if (response.status === 404) {
      await response.body?.cancel();
      return null;
    }
    let entry: RemoteEntry;
    try {
      entry = JSON.parse(await response.text());
    } catch {
      throw new RemoteError(`${this.url}/ac/${key} is not JSON: not an entry this pipeline wrote; refused`);
    }
    const problem = entry?.format !== FORMAT ? `not a ${FORMAT} entry` : manifestProblem(entry.manifest);
    if (problem) throw new RemoteError(`${this.url}/ac/${key} does not check out (${problem}); refused`);
    return entry;
  }

  /**
   * For planning: the key as the remote has it, or null (absent, or the remote unusable: then
   * one warning and no more lookups this run, which goes on with what it has).
   */
  async lookup(key: string): Promise<EntryState | null> {
    if (this.offline) return null;
    try {
      const entry = await this.entry(key);
      return entry ? { state: "remote", output: entryOutput(entry.manifest, entry.run), run: entry.run } : null;
    } catch (error) {
      if (!(error instanceof RemoteError) || this.strict) throw error;
      this.offline = error.message;
      this.warn(`warning: remote cache not used: ${error.message}`);
      return null;
    }
  }

  async hasBlob(sha256: string): Promise<boolean> {
    const response = await this.request("HEAD", `cas/${sha256}`);
    await response.body?.cancel();
    return response.ok;
  }

  /** Upload a file as `/cas/<sha256>` (streamed from disk). */
  async putBlob(sha256: string, path: string, size: number): Promise<void> {
    using file = await Deno.open(path, { read: true });
    const response = await this.request("PUT", `cas/${sha256}`, file.readable, { "content-length": String(size) });
    await response.body?.cancel();
  }

  /** Upload an entry: the caller has sent every file it names first. */
  async putEntry(key: string, manifest: Manifest, run: RunInfo | null): Promise<void> {
    const entry: RemoteEntry = { format: FORMAT, manifest, run };
    const response = await this.request("PUT", `ac/${key}`, JSON.stringify(entry), {
      "content-type": "application/json",
    });
    await response.body?.cancel();
  }

  /**
   * Download `/cas/<sha256>` into `dest`, hashing on the way; bytes that are not what the name
   * promises are refused (the file is removed) with one line naming `what` they were for.
   */
  async fetchBlob(sha256: string, size: number, dest: string, what: string): Promise<void> {
    const response = await this.request("GET", `cas/${sha256}`);
    if (response.status === 404) {
      await response.body?.cancel();
      throw new RemoteError(`${this.url}/cas/${sha256} (${what}) is missing on the remote; nothing promoted`);
    }
    const hash = createHash("sha256");
    let received = 0;
    {
      using file = await Deno.open(dest, { write: true, create: true, truncate: true });
      for await (const chunk of response.body!) {
        received += chunk.length;
        // A server sending more than the file's size is wrong already: stop reading.
        if (received > size) break;
        hash.update(chunk);
        for (let written = 0; written < chunk.length;) written += await file.write(chunk.subarray(written));
      }
      await file.sync();
    }
    const actual = hash.digest("hex");
    if (received !== size || actual !== sha256) {
      await Deno.remove(dest).catch(() => {});
      const got = received > size ? `more than ${size} bytes` : `${received} bytes with sha256 ${actual}`;
      throw new RemoteError(
        `${this.url}/cas/${sha256} (${what}) sent ${got}, not the content its name promises: refused, nothing promoted`,
      );
    }
  }

  private async request(
    method: string,
    path: string,
    body?: BodyInit,
    headers: Record<string, string> = {},
  ): Promise<Response> {
    const url = `${this.url}/${path}`;
    let response: Response;
    try {
      response = await fetch(url, {
        method,
        body,
        headers: { ...headers, ...(this.authorization ? { authorization: this.authorization } : {}) },
      });
    } catch (error) {
      const reason = error instanceof Error ? error.message.split("\n")[0] : String(error);
      throw new RemoteError(`cannot reach the remote cache at ${this.url}: ${reason}`);
    }
    if (response.ok || (response.status === 404 && method !== "PUT")) return response;
    await response.body?.cancel();
    const advice = response.status === 401 || response.status === 403
      ? `: set ${envName("REMOTE_TOKEN")} (a bearer token) or ${
        envName("REMOTE_BASIC")
      } (user:password) to credentials it accepts`
      : "";
    throw new RemoteError(`${method} ${url} was refused: HTTP ${response.status} ${response.statusText}${advice}`);
  }
}
