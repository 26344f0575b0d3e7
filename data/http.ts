/**
 * Resumable HTTP(S) download: streams to `<dest>.part`, resumes with a Range request after a cut
 * connection or a killed run, retries with exponential backoff, times out a stalled transfer,
 * reports how many MB it has (the engine draws rate and ETA), and checks an optional pinned sha256 before the file gets its final
 * name (a mismatch deletes it: nothing is kept).
 */
import { sha256File } from "../pipeline/core/hash.ts";
import { UserError } from "../pipeline/core/errors.ts";
import type { Progress } from "../pipeline/core/types.ts";

export interface DownloadOptions {
  sha256?: string;
  /** a transfer that receives nothing for this long is aborted and retried */
  timeoutMs: number;
  retries: number;
  progress: (update: Progress) => void;
  log: (line: string) => void;
  /** first backoff delay; doubles per retry */
  backoffMs?: number;
}

class TransientError extends Error {}

async function partSize(path: string): Promise<number> {
  try {
    return (await Deno.stat(path)).size;
  } catch {
    return 0;
  }
}

/** One request: append what the server sends to the .part file. Throws TransientError to retry. */
async function fetchOnce(url: string, part: string, options: DownloadOptions): Promise<void> {
  const have = await partSize(part);
  const controller = new AbortController();
  let stall = setTimeout(() => controller.abort(), options.timeoutMs);
  try {
    let response: Response;
    try {
      response = await fetch(url, {
        headers: have ? { Range: `bytes=${have}-` } : {},
        signal: controller.signal,
      });
    } catch (error) {
      throw new TransientError(`cannot reach ${url}: ${(error as Error).message}`);
    }
    if (response.status === 416 && have) return; // already complete
    if (response.status >= 500 || response.status === 429) {
      await response.body?.cancel();
      throw new TransientError(`${url} answered ${response.status}`);
    }
    if (!response.ok) {
      await response.body?.cancel();
      throw new UserError(`${url} answered ${response.status} ${response.statusText}: check data.url`);
    }
    const resuming = response.status === 206;
    if (have && !resuming) options.log(`server ignored the Range request: restarting ${url} from the start`);
    const start = resuming ? have : 0;
    const length = Number(response.headers.get("content-length") ?? NaN);
    const total = start + length;
    using file = await Deno.open(part, { write: true, create: true, append: resuming, truncate: !resuming });
    let received = start;
    try {
      for await (const chunk of response.body!) {
        clearTimeout(stall);
        stall = setTimeout(() => controller.abort(), options.timeoutMs);
        let written = 0;
        while (written < chunk.length) written += await file.write(chunk.subarray(written));
        received += chunk.length;
        const mb = (bytes: number) => Math.round(bytes / 1e5) / 10;
        options.progress({ done: mb(received), ...(Number.isFinite(total) ? { total: mb(total) } : {}), unit: "MB" });
      }
    } catch (error) {
      throw new TransientError(`transfer of ${url} broke after ${received} bytes: ${(error as Error).message}`);
    }
    await file.sync();
    if (Number.isFinite(total) && received < total) {
      throw new TransientError(`transfer of ${url} ended early at ${received} of ${total} bytes`);
    }
  } finally {
    clearTimeout(stall);
  }
}

export async function downloadFile(url: string, dest: string, options: DownloadOptions): Promise<void> {
  if (!/^https?:\/\//.test(url)) throw new UserError(`data.url '${url}' is not an http(s) URL`);
  const part = `${dest}.part`;
  const backoff = options.backoffMs ?? 500;
  for (let attempt = 0;; attempt++) {
    try {
      await fetchOnce(url, part, options);
      break;
    } catch (error) {
      if (!(error instanceof TransientError)) throw error;
      if (attempt >= options.retries) {
        throw new UserError(
          `${error.message}; gave up after ${attempt + 1} attempts (data.retries); run again to resume`,
        );
      }
      const delay = backoff * 2 ** attempt;
      options.log(`${error.message}; resuming in ${(delay / 1000).toFixed(1)}s (attempt ${attempt + 2})`);
      await new Promise((resolve) => setTimeout(resolve, delay));
    }
  }
  if (options.sha256) {
    const actual = await sha256File(part);
    if (actual !== options.sha256.toLowerCase()) {
      await Deno.remove(part);
      throw new UserError(
        `sha256 of ${url} is ${actual}, but data.sha256 pins ${options.sha256}; the download was deleted: fix data.sha256 or the URL`,
      );
    }
  }
  await Deno.rename(part, dest);
}
