/** Shared test helpers: a private copy of the project to run the real CLI in, and CLI runs. */
import { join } from "node:path";
import { existsSync } from "node:fs";
import { createHash } from "node:crypto";
import { fileURLToPath } from "node:url";
import { requires } from "./requires.ts";
import { exists } from "../../pipeline/storage/fsutil.ts";

export const REPO = fileURLToPath(new URL("../..", import.meta.url));
export const SHARED_CELEBA = join(REPO, "..", "shared", "celeba");

const PROJECT_FILES = [
  "deno.json",
  "deno.lock",
  "main.ts",
  "sample.ts",
  "params.json",
  "params",
  "pipeline",
  "stages",
  "models",
  "data",
];

const scratch: string[] = [];

/**
 * A new temp dir, removed when this test file's process ends, passed or failed: a CI machine keeps
 * its /tmp, and a suite run left over a hundred project copies there.
 */
export async function scratchDir(options: Deno.MakeTempOptions = { prefix: "facegan-test-" }): Promise<string> {
  const dir = await Deno.makeTempDir(options);
  scratch.push(dir);
  return dir;
}

/** scratchDir, for a caller that cannot wait. */
export function scratchDirSync(options: Deno.MakeTempOptions = { prefix: "facegan-test-" }): string {
  const dir = Deno.makeTempDirSync(options);
  scratch.push(dir);
  return dir;
}

globalThis.addEventListener("unload", () => {
  for (const dir of scratch) {
    try {
      Deno.removeSync(dir, { recursive: true });
    } catch {
      // removed by its test already
    }
  }
});

/**
 * Copy the project's sources into a temp dir (node_modules linked, not copied), so a test owns
 * its outputs/, lock and params without touching the checkout.
 */
export async function projectCopy(): Promise<string> {
  const root = await scratchDir();
  for (const name of PROJECT_FILES) {
    await new Deno.Command("cp", { args: ["-r", join(REPO, name), join(root, name)] }).output();
  }
  await Deno.symlink(join(REPO, "node_modules"), join(root, "node_modules"));
  return root;
}

/**
 * A project copy whose cache already holds the tiny profile's data stages (download, crop, shard),
 * for tests of train and what follows: those stages give the same bytes every time, and drawing
 * 240 synthetic faces is a third of a tiny run. The engine still computes every key and finds the
 * entries by it, so a template made by other code only means the stages run again.
 */
export async function tinyDataCopy(): Promise<string> {
  const root = await projectCopy();
  await Deno.mkdir(join(root, "outputs"));
  const copied = await new Deno.Command("cp", { args: ["-a", await tinyDataCache(), join(root, "outputs", "cache")] })
    .output();
  if (!copied.success) throw new Error(`copying the tiny data template: ${new TextDecoder().decode(copied.stderr)}`);
  return root;
}

let tinyDataTemplate: Promise<string> | undefined;

/**
 * The template's cache folder, made once per code version: named by a hash of the project's sources,
 * so test files running at once (and later runs of the same code) share it. Two files that miss it
 * together both make it; the second rename loses and that one uses the first.
 */
function tinyDataCache(): Promise<string> {
  tinyDataTemplate ??= (async () => {
    const final = join(Deno.env.get("TMPDIR") ?? "/tmp", `facegan-tiny-data-${await sourcesHash()}`);
    if (await exists(final)) return final;
    const root = await projectCopy();
    const made = await facegan(root, ["run", "--params", "params/tiny.json", "--until", "shard"]);
    if (made.code !== 0) throw new Error(`the tiny profile's data stages failed: ${made.stderr}`);
    const cache = join(root, "outputs", "cache");
    // The entries alone: no stat cache of the maker's paths, no claim folder.
    for await (const entry of Deno.readDir(cache)) {
      if (entry.name.startsWith(".")) await Deno.remove(join(cache, entry.name), { recursive: true });
    }
    await Deno.rename(cache, final).catch(async (error) => {
      if (!(await exists(final))) throw error;
    });
    return final;
  })();
  return tinyDataTemplate;
}

/** sha256 of the files a project copy gets (the lock aside), in order: the code version. */
async function sourcesHash(): Promise<string> {
  const hash = createHash("sha256");
  const add = async (path: string) => {
    const info = await Deno.stat(path);
    if (info.isFile) {
      hash.update(path.slice(REPO.length)).update(await Deno.readFile(path));
      return;
    }
    const names = [];
    for await (const entry of Deno.readDir(path)) names.push(entry.name);
    for (const name of names.sort()) await add(join(path, name));
  };
  for (const name of PROJECT_FILES) await add(join(REPO, name));
  return hash.digest("hex").slice(0, 16);
}

export interface CommandResult {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * `env`: extra variables for this command only. Never Deno.env.set in a test: `deno test --parallel`
 * runs the test files in one process, so the variable would reach every other file's commands.
 */
export async function run(cwd: string, args: string[], env?: Record<string, string>): Promise<CommandResult> {
  const output = await new Deno.Command(Deno.execPath(), { args, cwd, env, stdout: "piped", stderr: "piped" }).output();
  const decode = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
  return { code: output.code, stdout: decode(output.stdout), stderr: decode(output.stderr) };
}

/** `deno run -A main.ts ARGS` in a project copy. */
export function facegan(root: string, args: string[], env?: Record<string, string>): Promise<CommandResult> {
  return run(root, ["run", "-A", "main.ts", ...args], env);
}

export async function readLock(root: string) {
  return JSON.parse(await Deno.readTextFile(join(root, "pipeline.lock.json")));
}

export { exists };

/** Poll until `condition` holds (or fail after `timeoutMs`). */
export async function waitFor(condition: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** The files of the partial (in-progress) cache dirs of a project copy. */
export async function partialDirs(root: string): Promise<string[]> {
  const found: string[] = [];
  try {
    for await (const entry of Deno.readDir(join(root, "outputs", "cache"))) {
      if (entry.name.startsWith(".partial-")) found.push(join(root, "outputs", "cache", entry.name));
    }
  } catch { /* no cache yet */ }
  return found;
}

const REAL_HALF = join(SHARED_CELEBA, "img_align_half");

/** ../shared/celeba/img_align_half, or null where it is absent. */
export const REAL_SAMPLE: string | null = existsSync(REAL_HALF) ? REAL_HALF : null;

/** Options of a test that needs the real sample: ignored, with the reason in its name, where it is absent. */
export function needsRealSample(name: string): { name: string; ignore: boolean } {
  return requires(name, !REAL_SAMPLE && `${REAL_HALF} is absent; the real CelebA sample lives in ../shared`);
}

/** A temp folder with the first `count` photos of the real sample. */
export async function copyRealPhotos(half: string, count: number): Promise<string> {
  const folder = await scratchDir();
  for (let i = 1; i <= count; i++) {
    const name = `${String(i).padStart(6, "0")}.jpg`;
    await Deno.copyFile(join(half, name), join(folder, name));
  }
  return folder;
}

/** The data stages on all 8,000 real photos (params/shared-sample.json) in a project copy. */
export async function shardSharedSample(root: string, half: string): Promise<void> {
  const args = ["run", "--params", "params/shared-sample.json", "--set", `data.path=${half}`, "--until", "shard"];
  const result = await facegan(root, args);
  if (result.code !== 0) throw new Error(result.stderr);
}

/** `--set` arguments that point the download stage at a local folder or zip. */
export function localSource(path: string): string[] {
  return ["--set", "data.source=path", "--set", `data.path=${path}`];
}

/** `--set` arguments that point the download stage at a URL with a pinned sha256. */
export function urlSource(url: string, sha256: string): string[] {
  return ["--set", "data.source=url", "--set", `data.url=${url}`, "--set", `data.sha256=${sha256}`];
}

/** Why an optional backend cannot start here (the message says what to install), or null; leaves cpu as the backend. */
export async function backendMissing(backend: "native" | "webgpu"): Promise<string | null> {
  // Imported here, not at the top: most tests never load tfjs.
  const { BackendUnavailable, useBackend } = await import("../../models/backend.ts");
  try {
    await useBackend(backend);
    return null;
  } catch (error) {
    if (!(error instanceof BackendUnavailable)) throw error;
    return error.message;
  } finally {
    await useBackend("cpu");
  }
}

/** The files of a cache entry's artifact in a project copy. */
export async function listCache(root: string, key: string): Promise<string[]> {
  const names: string[] = [];
  for await (const entry of Deno.readDir(join(root, "outputs", "cache", key, "out"))) names.push(entry.name);
  return names.sort();
}
