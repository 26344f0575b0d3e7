/**
 * A plain machine, one without the system's libjpeg-turbo and oneDNN: crop and shard make the same
 * bytes as with them (libjpeg-turbo comes from the npm package), the run's first line says that
 * train and evaluate fall back to wasm and the fix, status and --dry-run say train's output will
 * differ from a lock made on the native backend; and an environment that reproduces a stage's
 * output leaves its lock entry byte-identical.
 *
 * The system's libraries are hidden for real where the test may (root: a mount namespace with
 * /dev/null bound over them), and pointed elsewhere through FACEGAN_TURBOJPEG_PATH and
 * FACEGAN_DNNL_PATH otherwise.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { npmTurboJpegPath, SYSTEM_TURBOJPEG, TurboJpeg, TurboJpegUnavailable } from "../data/turbojpeg.ts";
import { type LockStage, readLock as readLockFile, writeLock } from "../pipeline/core/lock.ts";
import { facegan, projectCopy, readLock, scratchDir, tinyDataCopy } from "./support/helpers.ts";
import { requires } from "./support/requires.ts";

const TINY = ["--params", "params/tiny.json"];
const NO_DNNL = { FACEGAN_DNNL_PATH: "/nonexistent/libdnnl.so.2" };

/** Why the library at `path` cannot be opened here, or null. */
function turboMissing(path: string): string | null {
  try {
    new TurboJpeg(path).close();
    return null;
  } catch (error) {
    if (error instanceof TurboJpegUnavailable) return error.message;
    throw error;
  }
}

const npm = npmTurboJpegPath();
const npmMissing = "path" in npm ? turboMissing(npm.path) : npm.why;
const systemMissing = turboMissing(SYSTEM_TURBOJPEG);

/** The files the loader opens for these sonames (`ldconfig -p`), resolved; empty where one is not installed. */
async function systemFiles(sonames: string[]): Promise<string[]> {
  const listing = await new Deno.Command("ldconfig", { args: ["-p"], stdout: "piped", stderr: "null" }).output()
    .then((output) => new TextDecoder().decode(output.stdout), () => "");
  const files = sonames.map((soname) =>
    listing.match(new RegExp(`^\\s*${soname.replaceAll(".", "\\.")} .*=> (\\S+)`, "m"))?.[1]
  );
  if (files.some((file) => !file)) return [];
  return await Promise.all(files.map((file) => Deno.realPath(file!)));
}

const hidden = await systemFiles([SYSTEM_TURBOJPEG, "libdnnl.so.2"]);

/** Why the libraries cannot be hidden here (not root, no unshare, not installed), or null. */
async function hidingMissing(): Promise<string | null> {
  if (!hidden.length) return "the system's libturbojpeg.so.0 and libdnnl.so.2 are not both installed: nothing to hide";
  if (Deno.uid() !== 0) return "hiding the system's libraries needs root (unshare -m, mount --bind)";
  const probe = await new Deno.Command("unshare", { args: ["-m", "true"], stderr: "piped" }).output().catch(() => null);
  if (!probe?.success) return "unshare -m is not permitted here";
  return null;
}

const cannotHide = await hidingMissing();

/** `deno run -A main.ts ARGS` in `root` with the system's libjpeg-turbo and oneDNN hidden behind /dev/null. */
async function faceganHidden(root: string, args: string[]) {
  const mounts = hidden.map((file) => `mount --bind /dev/null '${file}'`).join(" && ");
  const output = await new Deno.Command("unshare", {
    args: ["-m", "sh", "-c", `${mounts} && exec "$0" "$@"`, Deno.execPath(), "run", "-A", "main.ts", ...args],
    cwd: root,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decode = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
  return { code: output.code, stdout: decode(output.stdout), stderr: decode(output.stderr) };
}

/** The lines a run printed before its first stage line (▶ running, ✓ cached, ...). */
function beforeFirstStage(stderr: string): string[] {
  const lines = stderr.split("\n");
  return lines.slice(0, lines.findIndex((line) => /^[▶✓⇣…⚠✗] /.test(line)));
}

const WASM_NOTE =
  /^note: train and evaluate will run on one-core wasm \(about \d+x slower[^)]*\) .*apt-get install libdnnl2.*FACEGAN_DNNL_PATH/;

Deno.test("the lock keeps a stage's entry byte-identical when another environment reproduces its output, and records a new one when the output differs", async () => {
  const dir = await scratchDir();
  const path = join(dir, "pipeline.lock.json");
  const dag = [{ name: "train", deps: [], params: [], module: "stages/train.ts" }];
  const entry: LockStage = {
    key: "1".repeat(64),
    params: {},
    code: {},
    libraries: {},
    inputs: {},
    runtime: { deno: "2" },
    output: "a".repeat(64),
    files: 1,
    bytes: 10,
    environment: { backend: "native", backend_detail: "oneDNN 2.6.3 avx512_core_amx, 2 threads" },
  };
  await writeLock(path, dag, "params.json", new Map([["train", entry]]));
  const before = await Deno.readTextFile(path);

  const otherCpu = { ...entry, environment: { ...entry.environment, backend_detail: "oneDNN 2.6.3 avx2, 2 threads" } };
  const reproduced = await writeLock(path, dag, "params.json", new Map([["train", otherCpu]]));
  assert.equal(await Deno.readTextFile(path), before, "same output, other environment: the lock is unchanged");
  assert.deepEqual(reproduced, [{
    stage: "train",
    differences: ["backend_detail: oneDNN 2.6.3 avx512_core_amx, 2 threads -> oneDNN 2.6.3 avx2, 2 threads"],
  }]);

  const differs = { ...otherCpu, output: "b".repeat(64) };
  assert.deepEqual(await writeLock(path, dag, "params.json", new Map([["train", differs]])), []);
  assert.deepEqual((await readLockFile(path))!.stages.train, differs, "another output: the new environment with it");
  await Deno.remove(dir, { recursive: true });
});

Deno.test(
  requires(
    "the npm package's libjpeg-turbo and the system's make the same crop and shard; the lock stays byte-identical and the run says crop reproduced",
    npmMissing ?? systemMissing,
  ),
  async () => {
    const root = await projectCopy();
    const first = await facegan(root, ["run", "--until", "shard", ...TINY]);
    assert.equal(first.code, 0, first.stderr);
    assert.doesNotMatch(first.stderr, /decoding with/, "the npm package's library is the first choice");
    const lock = await Deno.readTextFile(join(root, "pipeline.lock.json"));
    const system = await facegan(root, ["run", "--until", "shard", "--from", "crop", ...TINY], {
      FACEGAN_TURBOJPEG_PATH: SYSTEM_TURBOJPEG,
    });
    assert.equal(system.code, 0, system.stderr);
    assert.equal(await Deno.readTextFile(join(root, "pipeline.lock.json")), lock, "the same bytes: the lock unchanged");
    const versionOf = (path: string) => {
      const turbo = new TurboJpeg(path);
      const version = turbo.version;
      turbo.close();
      return version;
    };
    if (versionOf((npm as { path: string }).path) !== versionOf(SYSTEM_TURBOJPEG)) {
      assert.match(system.stderr, /= crop +reproduced the lock's output in another environment \(decoder: /);
      const noop = await facegan(root, ["run", "--until", "shard", ...TINY]);
      assert.doesNotMatch(noop.stderr, /reproduced/, "a cached entry is no news");
    }
  },
);

Deno.test(
  requires(
    "with the system's libjpeg-turbo and oneDNN hidden: crop and shard make the same bytes as with them, and the run's first line names the wasm fallback and its fix",
    cannotHide,
  ),
  async () => {
    const withLibraries = await projectCopy();
    const made = await facegan(withLibraries, ["run", "--until", "shard", ...TINY], {
      FACEGAN_TURBOJPEG_PATH: SYSTEM_TURBOJPEG,
    });
    assert.equal(made.code, 0, made.stderr);
    const plain = await projectCopy();
    const run = await faceganHidden(plain, ["run", ...TINY, "--set", "train.backend=auto"]);
    assert.equal(run.code, 0, run.stderr);
    const before = beforeFirstStage(run.stderr);
    assert.equal(before.length, 1, run.stderr);
    assert.match(before[0], WASM_NOTE);
    assert.equal(run.stderr.match(/^note: /gm)?.length, 1, "said once");
    const [expected, actual] = [(await readLock(withLibraries)).stages, (await readLock(plain)).stages];
    for (const stage of ["crop", "shard"]) assert.equal(actual[stage].output, expected[stage].output, stage);
    assert.equal(actual.train.environment.backend, "wasm");
  },
);

Deno.test("without libdnnl: the first line says train and evaluate run on wasm, how much slower and the fix, once; status and --dry-run say train will differ from a lock made on native", async () => {
  const root = await tinyDataCopy();
  const auto = [...TINY, "--set", "train.backend=auto"];
  const run = await facegan(root, ["run", ...auto], NO_DNNL);
  assert.equal(run.code, 0, run.stderr);
  const before = beforeFirstStage(run.stderr);
  assert.equal(before.length, 1, run.stderr);
  assert.match(before[0], WASM_NOTE);
  assert.match(before[0], /\/nonexistent\/libdnnl\.so\.2 could not be loaded/);
  assert.equal(run.stderr.match(/^note: /gm)?.length, 1, "said once");

  const noop = await facegan(root, ["run", ...auto], NO_DNNL);
  assert.doesNotMatch(noop.stderr, /^note: /m, "nothing will run on wasm: nothing to say");
  const data = await facegan(root, ["run", ...auto, "--until", "shard", "--from", "crop"], NO_DNNL);
  assert.doesNotMatch(data.stderr, /^note: /m, "the data stages need no backend");

  // As if the lock had been made on a machine with oneDNN.
  const lockPath = join(root, "pipeline.lock.json");
  const lock = await readLock(root);
  for (const stage of ["train", "evaluate"]) lock.stages[stage].environment.backend = "native";
  await Deno.writeTextFile(lockPath, JSON.stringify(lock));
  const changed = [...auto, "--set", "train.seed=7"];
  const differs = /its output will differ from the lock's: the lock's was made on the native backend/;
  const status = await facegan(root, ["status", ...changed], NO_DNNL);
  assert.equal(status.code, 0, status.stderr);
  assert.match(status.stdout.split("\n")[0], WASM_NOTE);
  assert.match(status.stdout.split("\n").find((line) => line.startsWith("train "))!, differs);
  const dryRun = await facegan(root, ["run", "--dry-run", ...changed], NO_DNNL);
  assert.equal(dryRun.code, 0, dryRun.stderr);
  assert.match(dryRun.stderr.split("\n").find((line) => line.startsWith("• train "))!, differs);
  const withNative = await facegan(root, ["status", ...changed]);
  if (withNative.stdout.startsWith("note: ")) return; // no oneDNN on this machine either
  assert.doesNotMatch(withNative.stdout, differs, "with oneDNN, nothing to say");
});
