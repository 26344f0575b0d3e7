/**
 * Faults of the machine, caused for real: a full filesystem (tmpfs), Ctrl-C and SIGTERM to the
 * engine, a stage over a small V8 heap limit or SIGKILLed from outside, a read-only outputs dir.
 * Each must give one line, no stack trace, and leave nothing half-written behind.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { cli, makeStubProject, takeRuns } from "./support/stub_project.ts";
import {
  exists,
  facegan,
  partialDirs,
  projectCopy,
  REPO,
  scratchDir,
  scratchDirSync,
  tinyDataCopy,
  waitFor,
} from "./support/helpers.ts";
import { writeFileAtomic } from "../pipeline/storage/fsutil.ts";
import { environmentFault } from "../pipeline/core/faults.ts";
import { requires } from "./support/requires.ts";

const TINY = ["--params", "params/tiny.json"];

function command(name: string, ...args: string[]): { code: number; stderr: string } {
  const output = new Deno.Command(name, { args, stdout: "null", stderr: "piped" }).outputSync();
  return { code: output.code, stderr: new TextDecoder().decode(output.stderr) };
}

/** Why mounts cannot be made here (not root, no mount), or null: then tmpfs and bind mounts are tested. */
function cannotMount(): string | null {
  if (Deno.build.os !== "linux") return "not Linux";
  if (Deno.uid() !== 0) return "not root: mounting a small tmpfs or a read-only bind mount needs root";
  const probe = scratchDirSync();
  const mounted = command("mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", probe);
  if (mounted.code !== 0) return `mount -t tmpfs failed: ${mounted.stderr.trim()}`;
  command("umount", probe);
  return null;
}
const MOUNT_MISSING = cannotMount();

/** A test that needs mounts: ignored, with the reason in its name, where they cannot be made. */
function mountTest(name: string, fn: () => Promise<void>) {
  Deno.test({ ...requires(name, MOUNT_MISSING), fn });
}

/** Mount a tmpfs of `size` (e.g. "10m") at `dir` (created); unmount it with `unmount`. */
async function mountTmpfs(dir: string, size: string): Promise<void> {
  await Deno.mkdir(dir, { recursive: true });
  const result = command("mount", "-t", "tmpfs", "-o", `size=${size}`, "tmpfs", dir);
  assert.equal(result.code, 0, result.stderr);
}

function unmount(dir: string) {
  command("umount", "-l", dir);
}

/** Every file below `dir` whose name holds a temp mark (`NAME.tmp-PID`). */
async function tempFiles(dir: string): Promise<string[]> {
  const found: string[] = [];
  const walk = async (path: string) => {
    for await (const entry of Deno.readDir(path)) {
      const child = join(path, entry.name);
      if (entry.name.includes(".tmp-")) found.push(child);
      if (entry.isDirectory) await walk(child);
    }
  };
  await walk(dir);
  return found;
}

/** The lines of stderr a user reads as the outcome: errors, warnings, interruptions. */
function errorLines(stderr: string): string[] {
  return stderr.split("\n").filter((line) => /^(error|interrupted|busy)\b/.test(line));
}

function assertNoStackTrace(stderr: string) {
  assert.doesNotMatch(stderr, /^\s+at |Uncaught|stack trace|Last few GCs/im, stderr);
}

/** Processes whose command line mentions `root` (the engine and stage processes of a project copy). */
function processesIn(root: string): number[] {
  const pids: number[] = [];
  for (const entry of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(entry.name) || Number(entry.name) === Deno.pid) continue;
    try {
      if (Deno.readTextFileSync(`/proc/${entry.name}/cmdline`).includes(root)) pids.push(Number(entry.name));
    } catch { /* gone */ }
  }
  return pids;
}

/** The engine as a child process of a project copy, stderr piped. */
function engineChild(root: string, args: string[], env: Record<string, string>, stdout: "null" | "piped") {
  return new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--config", join(REPO, "deno.json"), join(root, "main.ts"), ...args],
    cwd: root,
    env,
    stdout,
    stderr: "piped",
  }).spawn();
}

/** The engine as a child we can signal, with its stderr collected. */
function spawnEngine(root: string, args: string[], env: Record<string, string> = {}) {
  const child = engineChild(root, args, env, "null");
  const output = child.output().then((result) => ({
    code: result.code,
    stderr: new TextDecoder().decode(result.stderr),
  }));
  return { child, output };
}

async function resumePointWritten(root: string): Promise<boolean> {
  for (const dir of await partialDirs(root)) if (await exists(join(dir, "resume_point.txt"))) return true;
  return false;
}

mountTest(
  "a full disk under outputs/: one line, no temp file after three runs; with room the run completes and the lock equals a run that never failed",
  async () => {
    const reference = await projectCopy();
    const clean = await facegan(reference, ["run", ...TINY, "--until", "shard"]);
    assert.equal(clean.code, 0, clean.stderr);

    const root = await projectCopy();
    const outputs = join(root, "outputs");
    // The tiny profile's download (240 photos: 2.9 MB in tmpfs pages) fits, crop's 0.75 MB more does not.
    await mountTmpfs(outputs, "3300k");
    try {
      for (let attempt = 1; attempt <= 3; attempt++) {
        const full = await facegan(root, ["run", ...TINY, "--until", "shard"]);
        assert.equal(full.code, 1, full.stderr);
        assertNoStackTrace(full.stderr);
        const lines = errorLines(full.stderr);
        assert.equal(lines.length, 1, full.stderr);
        assert.match(lines[0], /^error: crop: no space left on device in stage crop \(.*outputs\/cache\/\.partial-/);
        assert.match(lines[0], /\d+(\.\d)? (B|KiB) free there; free space \(`deno task gc --dry-run`/);
        assert.doesNotMatch(full.stderr, /pipeline stopped/, "the stage's own line says it all");
        assert.deepEqual(await tempFiles(outputs), [], `attempt ${attempt}`);
        assert.deepEqual(await partialDirs(root), [], "crop is not resumable: its partial output is removed");
        assert.equal(await exists(join(outputs, "run.lock")), false);
        assert.equal(await exists(join(root, "pipeline.lock.json")), false, "no lock for a failed run");
      }
      command("mount", "-o", "remount,size=64m", outputs);
      const roomy = await facegan(root, ["run", ...TINY, "--until", "shard"]);
      assert.equal(roomy.code, 0, roomy.stderr);
      assert.match(roomy.stderr, /✓ download\s+cached/);
      assert.equal(
        await Deno.readTextFile(join(root, "pipeline.lock.json")),
        await Deno.readTextFile(join(reference, "pipeline.lock.json")),
      );
    } finally {
      unmount(outputs);
    }
  },
);

mountTest("a full disk while the engine writes outputs/latest: one line naming it, no temp file", async () => {
  const root = await makeStubProject();
  const latest = join(root, "outputs", "latest");
  await mountTmpfs(latest, "16k");
  try {
    await Deno.writeFile(join(latest, "filler"), new Uint8Array(16 * 1024)).catch(() => {});
    const full = await cli(root, ["run"]);
    assert.equal(full.code, 1, full.stderr);
    assertNoStackTrace(full.stderr);
    const lines = errorLines(full.stderr);
    assert.equal(lines.length, 1, full.stderr);
    assert.match(lines[0], /^error: no space left on device updating outputs\/latest \(.*\): 0 B free there/);
    assert.deepEqual(await tempFiles(join(root, "outputs")), []);
    await Deno.remove(join(latest, "filler"));
    await takeRuns(root);
    const again = await cli(root, ["run"]);
    assert.equal(again.code, 0, again.stderr);
    assert.deepEqual(await takeRuns(root), [], "the stages' entries were stored before: nothing re-runs");
  } finally {
    unmount(latest);
  }
});

mountTest("writeFileAtomic on a full disk leaves the previous file whole and no temp file", async () => {
  const dir = await scratchDir();
  await mountTmpfs(dir, "16k");
  try {
    const path = join(dir, "pipeline.lock.json");
    await writeFileAtomic(path, "previous\n");
    const error = await writeFileAtomic(path, new Uint8Array(64 * 1024)).then(() => null, (e) => e);
    assert.ok(error, "the write failed");
    assert.match(String(environmentFault(error, "writing the lock", path)), /no space left on device writing the lock/);
    assert.equal(await Deno.readTextFile(path), "previous\n");
    assert.deepEqual([...Deno.readDirSync(dir)].map((entry) => entry.name), ["pipeline.lock.json"]);
  } finally {
    unmount(dir);
  }
});

mountTest("the free-space pre-check warns before a stage that wrote more last time than is free", async () => {
  const root = await makeStubProject();
  const outputs = join(root, "outputs");
  await mountTmpfs(outputs, "1m");
  try {
    assert.equal((await cli(root, ["run"])).code, 0);
    const lockPath = join(root, "pipeline.lock.json");
    const lock = JSON.parse(await Deno.readTextFile(lockPath));
    lock.stages.train.bytes = 50 * 1024 * 1024; // as if train had written 50 MiB
    await Deno.writeTextFile(lockPath, JSON.stringify(lock));
    const forced = await cli(root, ["run", "--from", "train"]);
    assert.equal(forced.code, 0, forced.stderr);
    assert.match(forced.stderr, /^warning: train wrote 50\.0 MiB last time but only [\d.]+ (KiB|MiB) is free in /m);
    assert.doesNotMatch(forced.stderr, /warning: (evaluate|render)/);
  } finally {
    unmount(outputs);
  }
});

/**
 * A reference run of `args` (the tiny profile up to train) to its end, and a copy whose run of
 * `args` got a Ctrl-C once `ready` held (both with the data stages already in their caches).
 */
async function interruptedTraining(args: string[], ready: (root: string) => Promise<boolean>, what: string) {
  const reference = await tinyDataCopy();
  const clean = await facegan(reference, ["run", ...args]);
  assert.equal(clean.code, 0, clean.stderr);

  const root = await tinyDataCopy();
  const { child, output } = spawnEngine(root, ["run", ...args]);
  await waitFor(() => ready(root), 120_000, what);
  child.kill("SIGINT");
  const stopped = await output;
  assert.equal(stopped.code, 130, stopped.stderr);
  const assertSameLock = async () =>
    assert.equal(
      await Deno.readTextFile(join(root, "pipeline.lock.json")),
      await Deno.readTextFile(join(reference, "pipeline.lock.json")),
    );
  return { root, stopped, assertSameLock };
}

Deno.test("Ctrl-C during train: one line, exit 130, no run.lock, no stage process; the next run resumes and ends byte-identical", async () => {
  const tiny = [...TINY, "--until", "train", "--set", "train.epochs=8"];
  const { root, stopped, assertSameLock } = await interruptedTraining(
    tiny,
    resumePointWritten,
    "train's first checkpoint",
  );
  assertNoStackTrace(stopped.stderr);
  const lines = errorLines(stopped.stderr);
  assert.equal(lines.length, 1, stopped.stderr);
  const kept = /^interrupted: train's progress kept \(epoch (\d) of 8\); run again to resume$/.exec(lines[0]);
  assert.ok(kept, lines[0]);
  assert.ok(Number(kept[1]) < 8, "stopped before the end");
  assert.equal(await exists(join(root, "outputs", "run.lock")), false);
  assert.deepEqual(processesIn(root), [], "no stage process left");
  assert.deepEqual(await tempFiles(join(root, "outputs")), []);

  const resumed = await facegan(root, ["run", ...tiny]);
  assert.equal(resumed.code, 0, resumed.stderr);
  assert.match(resumed.stderr, /train\s+running .*\[resuming\]/);
  assert.match(resumed.stderr, new RegExp(`resuming after epoch ${kept[1]}\\b`));
  await assertSameLock();
});

Deno.test("SIGTERM stops the run with exit 143; a second Ctrl-C exits at once and the cache stays valid", async () => {
  const root = await makeStubProject();
  assert.equal((await cli(root, ["run", "--until", "shard"])).code, 0);
  const slow = ["run", "--set", "train.sleep_ms=60000"];

  const term = spawnEngine(root, slow);
  await waitFor(() => resumePointWritten(root), 30_000, "train to start");
  term.child.kill("SIGTERM");
  const terminated = await term.output;
  assert.equal(terminated.code, 143, terminated.stderr);
  assert.deepEqual(errorLines(terminated.stderr), [
    "interrupted: train's progress kept (step 1 of 2); run again to resume",
  ]);
  assert.equal(await exists(join(root, "outputs", "run.lock")), false);

  // A stage slow to stop (it ignores SIGTERM): the engine waits for it, until a second Ctrl-C.
  await Deno.remove(join(root, "train.pid"));
  const twice = spawnEngine(root, [...slow, "--set", "train.ignore_sigterm=true"]);
  await waitFor(() => exists(join(root, "train.pid")), 30_000, "train to start");
  let ended = false;
  twice.output.then(() => ended = true);
  twice.child.kill("SIGINT");
  // The engine passes the stop on to the stage (which notes it and goes on), then waits for it.
  await waitFor(() => exists(join(root, "train.sigterm")), 10_000, "the stage to be told to stop");
  assert.equal(ended, false, "after one Ctrl-C the engine waits for the stage to stop");
  const started = Date.now();
  twice.child.kill("SIGINT");
  const quit = await twice.output;
  assert.equal(quit.code, 130, quit.stderr);
  assert.ok(Date.now() - started < 3_000, "the second Ctrl-C exits at once, before the stage's 5 s grace");
  assert.equal(await exists(join(root, "outputs", "run.lock")), false);
  await waitFor(() => Promise.resolve(processesIn(root).length === 0), 10_000, "the stage process to end");
  const check = await cli(root, ["verify", "--cache"]);
  assert.equal(check.code, 0, check.stdout);
  assert.match(check.stdout, /0 corrupt/);
  const next = await cli(root, ["run", "--set", "train.sleep_ms=1"]);
  assert.equal(next.code, 0, next.stderr);
});

Deno.test("a stage over a small V8 heap limit, and one SIGKILLed from outside: one line each naming the stage and the cause", async () => {
  const root = await makeStubProject();
  assert.equal((await cli(root, ["run", "--until", "shard"])).code, 0);

  const heap = spawnEngine(root, ["run", "--set", "train.hog_mb=400"], {
    PIPELINE_STAGE_V8_FLAGS: "--max-old-space-size=64",
  });
  const starved = await heap.output;
  assert.equal(starved.code, 1, starved.stderr);
  assertNoStackTrace(starved.stderr);
  assert.deepEqual(errorLines(starved.stderr), [
    "error: stage train ran out of memory: it reached the JavaScript heap limit; its memory grows with " +
    "train.hog_mb=400, eval.n_samples=10: lower one, or raise the limit " +
    "(PIPELINE_STAGE_V8_FLAGS=--max-old-space-size=MiB)",
  ]);

  const { output } = spawnEngine(root, ["run", "--set", "train.sleep_ms=60000"]);
  await waitFor(() => resumePointWritten(root), 30_000, "train to start");
  const pid = Number(await Deno.readTextFile(join(root, "train.pid")));
  Deno.kill(pid, "SIGKILL");
  const killed = await output;
  assert.equal(killed.code, 1, killed.stderr);
  assertNoStackTrace(killed.stderr);
  assert.deepEqual(errorLines(killed.stderr), [
    "error: stage train was killed (SIGKILL) from outside the pipeline, most likely by the kernel's " +
    "out-of-memory killer; its memory grows with train.hog_mb=0, eval.n_samples=10: lower one",
  ]);
  assert.match(killed.stderr, /^ {2}train's partial output kept \(step 1 of 2\): the next run resumes from it$/m);
  assert.equal(await exists(join(root, "outputs", "run.lock")), false);
});

mountTest("a read-only outputs dir: one line, exit 2, nothing written", async () => {
  const root = await makeStubProject();
  assert.equal((await cli(root, ["run"])).code, 0);
  const outputs = join(root, "outputs");
  const listing = async () => {
    const files: string[] = [];
    const walk = async (dir: string) => {
      for await (const entry of Deno.readDir(dir)) {
        const path = join(dir, entry.name);
        files.push(`${path} ${(await Deno.lstat(path)).mtime?.getTime()}`);
        if (entry.isDirectory) await walk(path);
      }
    };
    await walk(outputs);
    return files.sort();
  };
  const lock = await Deno.readTextFile(join(root, "pipeline.lock.json"));
  const before = await listing();
  assert.equal(command("mount", "--bind", outputs, outputs).code, 0);
  try {
    assert.equal(command("mount", "-o", "remount,ro,bind", outputs).code, 0);
    await takeRuns(root);
    for (const args of [["run"], ["run", "--set", "train.lr=0.5"]]) {
      const result = await cli(root, args);
      assert.equal(result.code, 2, result.stderr);
      assertNoStackTrace(result.stderr);
      assert.equal(result.stderr.trim().split("\n").length, 1, result.stderr);
      assert.match(
        result.stderr.trim(),
        /^error: read-only file system taking the run lock \(.*outputs\/run\.lock\); remount it read-write/,
      );
    }
    const status = await cli(root, ["status", "--set", "train.lr=0.5"]);
    assert.equal(status.code, 0, status.stderr);
    assert.deepEqual(await takeRuns(root), []);
    assert.deepEqual(await listing(), before, "nothing written under outputs/");
    assert.equal(await Deno.readTextFile(join(root, "pipeline.lock.json")), lock);
  } finally {
    unmount(outputs);
  }
});

Deno.test("outputs/ a link to a folder that is gone: one line, exit 2", async () => {
  const root = await makeStubProject();
  await Deno.symlink("/nonexistent/disk/outputs", join(root, "outputs"));
  const result = await cli(root, ["run"]);
  assert.equal(result.code, 2, result.stderr);
  assert.equal(
    result.stderr.trim(),
    "error: outputs/ is a link to /nonexistent/disk/outputs, which does not exist (a disk not mounted?); mount " +
      "it, or remove the link to use a local outputs/",
  );
});

const NOBODY = 65534;

/** Why the CLI cannot be run as another user here, or null (root with setpriv: run it as nobody). */
function cannotSwitchUser(): string | null {
  if (Deno.build.os !== "linux" || Deno.uid() !== 0) return "not root: running the CLI as another user needs root";
  if (command("setpriv", "--version").code !== 0) return "no setpriv (util-linux)";
  return null;
}
const SWITCH_MISSING = cannotSwitchUser();

function otherUserTest(name: string, fn: () => Promise<void>) {
  Deno.test({ ...requires(name, SWITCH_MISSING), fn });
}

/** The stub's CLI run as user nobody, in a project `root` that nobody owns. */
async function cliAsNobody(root: string, args: string[]): Promise<{ code: number; stderr: string }> {
  const denoDir = await scratchDir();
  await Deno.chmod(denoDir, 0o777);
  const output = await new Deno.Command("setpriv", {
    args: [
      `--reuid=${NOBODY}`,
      `--regid=${NOBODY}`,
      "--clear-groups",
      Deno.execPath(),
      "run",
      "-A",
      "--config",
      join(REPO, "deno.json"),
      join(root, "main.ts"),
      ...args,
    ],
    cwd: root,
    env: { DENO_DIR: denoDir, HOME: denoDir },
    stdout: "null",
    stderr: "piped",
  }).output();
  return { code: output.code, stderr: new TextDecoder().decode(output.stderr) };
}

otherUserTest(
  "an unreadable file or folder in data.path: one line naming it and its owner, exit 2, nothing written",
  async () => {
    const root = await makeStubProject();
    const data = await scratchDir();
    await Deno.writeTextFile(join(data, "a.jpg"), "a");
    await Deno.writeTextFile(join(data, "b.jpg"), "b");
    await Deno.chmod(join(data, "b.jpg"), 0o600);
    command("chown", "-R", `${NOBODY}:${NOBODY}`, root);
    command("chown", `${NOBODY}:${NOBODY}`, data, join(data, "a.jpg"));
    for (const args of [["run"], ["status"]]) {
      const result = await cliAsNobody(root, [...args, "--set", `data.path=${data}`]);
      assert.equal(result.code, 2, result.stderr);
      assert.equal(
        result.stderr.trim(),
        `error: cannot read a file data.path names: ${join(data, "b.jpg")} (permission denied: owned by uid 0 ` +
          `(root), mode 0600; you are uid ${NOBODY}); make it readable (chmod a+r) or move it elsewhere`,
      );
    }
    await Deno.remove(join(data, "b.jpg"));
    await Deno.mkdir(join(data, "private"), { mode: 0o700 });
    const folder = await cliAsNobody(root, ["status", "--set", `data.path=${data}`]);
    assert.equal(folder.code, 2, folder.stderr);
    assert.match(
      folder.stderr.trim(),
      new RegExp(`^error: cannot read a folder data\\.path names: ${join(data, "private")} \\(permission denied: `),
    );
    assert.equal(await exists(join(root, "outputs")), false, "nothing written");
  },
);

otherUserTest("a partial cache entry owned by another user: one line naming it and its owner, exit 2", async () => {
  const root = await makeStubProject();
  assert.equal((await cli(root, ["run"])).code, 0);
  const key = JSON.parse(await Deno.readTextFile(join(root, "pipeline.lock.json"))).stages.crop.key;
  command("chown", "-R", `${NOBODY}:${NOBODY}`, root);
  // What root's killed run of crop left behind.
  const partial = join(root, "outputs", "cache", `.partial-${key}`);
  await Deno.mkdir(join(partial, "out"), { recursive: true });
  await Deno.writeTextFile(join(partial, "out", "crop.txt"), "partial");
  await takeRuns(root);
  const result = await cliAsNobody(root, ["run", "--from", "crop"]);
  assert.equal(result.code, 2, result.stderr);
  assertNoStackTrace(result.stderr);
  const lines = errorLines(result.stderr);
  assert.equal(lines.length, 1, result.stderr);
  assert.match(
    lines[0],
    new RegExp(
      `^error: permission denied preparing stage crop \\(${partial}.*: owned by uid 0 \\(root\\), mode 0755; ` +
        `you are uid ${NOBODY}\\); fix its owner or permissions, or use your own outputs/$`,
    ),
  );
  assert.deepEqual(await takeRuns(root), [], "no stage ran");
});

/** The newest checkpoint dir of train's kept partial output. */
async function newestCheckpoint(root: string): Promise<string> {
  const [partial] = await partialDirs(root);
  const dir = join(partial, "out", "checkpoints");
  const names = [...Deno.readDirSync(dir)].map((entry) => entry.name).filter((name) => /^epoch-\d+$/.test(name));
  return join(dir, names.sort().at(-1)!);
}

Deno.test("D1: a damaged newest checkpoint in a kept partial train folder: the next run drops it, resumes from the one before and ends byte-identical", async () => {
  // 12 epochs: the kill lands after the fifth checkpoint with seven epochs to spare.
  const tiny = [...TINY, "--until", "train", "--set", "train.epochs=12"];
  const pastEpoch5 = async (root: string) => {
    for (const dir of await partialDirs(root)) {
      const point = await Deno.readTextFile(join(dir, "resume_point.txt")).catch(() => "");
      if (Number(/^epoch (\d+)/.exec(point)?.[1] ?? 0) >= 5) return true;
    }
    return false;
  };
  const { root, assertSameLock } = await interruptedTraining(tiny, pastEpoch5, "train's fifth checkpoint");
  const newest = await newestCheckpoint(root);
  const epoch = Number(newest.slice(-4));
  assert.ok(epoch < 12, "stopped before the end");
  const state = join(newest, "state.bin");
  const bytes = await Deno.readFile(state);
  bytes[100] ^= 0x01;
  await Deno.writeFile(state, bytes);

  for (const attempt of [1, 2]) {
    const resumed = await facegan(root, ["run", ...tiny]);
    assert.equal(resumed.code, 0, `attempt ${attempt}: ${resumed.stderr}`);
    if (attempt === 1) {
      const name = `epoch-${String(epoch).padStart(4, "0")}`;
      assert.match(resumed.stderr, new RegExp(`checkpoint ${name} unusable \\(.*\\): removed; trying an older one`));
      assert.match(resumed.stderr, new RegExp(`resuming after epoch ${epoch - 1}\\b`));
    }
  }
  await assertSameLock();
});

/** The engine with stdout piped too: `line` resolves with the first stdout line matching `pattern`. */
function spawnWatching(root: string, args: string[], pattern: RegExp, env: Record<string, string> = {}) {
  const child = engineChild(root, args, env, "piped");
  const line = Promise.withResolvers<string>();
  const stdout = (async () => {
    let text = "";
    let found: string | undefined;
    for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) {
      text += chunk;
      found ??= text.split("\n").find((candidate) => pattern.test(candidate));
      if (found) line.resolve(found);
    }
    return text;
  })();
  const output = Promise.all([child.status, new Response(child.stderr).text(), stdout]).then(
    ([status, stderr, out]) => ({ code: status.code, stderr, stdout: out }),
  );
  return { child, line: line.promise, output };
}

/** Ctrl-C to a command: exit 130, no stack trace, and the one outcome line it printed. */
async function interruptedLine(child: Deno.ChildProcess, output: Promise<{ code: number; stderr: string }>) {
  child.kill("SIGINT");
  const stopped = await output;
  assert.equal(stopped.code, 130, stopped.stderr);
  assertNoStackTrace(stopped.stderr);
  const lines = errorLines(stopped.stderr);
  assert.equal(lines.length, 1, stopped.stderr);
  return lines[0];
}

/** The scratch caches verify made under outputs/. */
async function verifyScratches(root: string): Promise<string[]> {
  const names: string[] = [];
  for await (const entry of Deno.readDir(join(root, "outputs"))) {
    if (entry.name.startsWith("verify-")) names.push(join(root, "outputs", entry.name));
  }
  return names;
}

Deno.test("D4: Ctrl-C of verify: one line, exit 130, its scratch outputs/verify-<host>-<pid> removed, no stage process left; gc removes a killed one's", async () => {
  const root = await makeStubProject();
  assert.equal((await cli(root, ["run"])).code, 0);
  const { child, output } = spawnEngine(root, ["verify", "train"], { STUB_SLEEP_MS_train: "60000" });
  const recomputing = async () => {
    for (const scratch of await verifyScratches(root)) {
      for await (const entry of Deno.readDir(scratch)) {
        if (await exists(join(scratch, entry.name, "resume_point.txt"))) return true;
      }
    }
    return false;
  };
  await waitFor(recomputing, 30_000, "verify to recompute train");
  assert.match(
    await interruptedLine(child, output),
    new RegExp(
      `^interrupted: verify stopped; the cache and the lock are untouched, its scratch outputs/verify-\\S+-${child.pid} removed$`,
    ),
  );
  assert.deepEqual(await verifyScratches(root), []);
  await waitFor(() => Promise.resolve(processesIn(root).length === 0), 10_000, "the stage process to end");
  const check = await cli(root, ["verify", "--cache"]);
  assert.equal(check.code, 0, check.stdout);

  // A verify killed outright cannot clean up: gc removes its scratch cache.
  const killed = spawnEngine(root, ["verify", "train"], { STUB_SLEEP_MS_train: "60000" });
  await waitFor(recomputing, 30_000, "verify to recompute train");
  killed.child.kill("SIGKILL");
  await killed.output;
  const [left] = await verifyScratches(root);
  assert.ok(left, "a SIGKILLed verify leaves its scratch");
  await waitFor(() => Promise.resolve(processesIn(root).length === 0), 10_000, "the stage process to end");
  const gc = await cli(root, ["gc"]);
  assert.equal(gc.code, 0, gc.stderr);
  assert.match(gc.stdout, new RegExp(`^removing  ${left.split("/").pop()}  `, "m"));
  assert.deepEqual(await verifyScratches(root), []);
});

Deno.test("D4: Ctrl-C of gc: one line, exit 130, no run.lock, every entry left is whole; the next gc finishes", async () => {
  const root = await makeStubProject();
  assert.equal((await cli(root, ["run"])).code, 0);
  // Many unreferenced entries, so that the interrupt lands while gc removes them.
  const cache = join(root, "outputs", "cache");
  const fake = Array.from({ length: 4000 }, (_, i) => `e${i.toString(16).padStart(63, "0")}`);
  for (const key of fake) {
    await Deno.mkdir(join(cache, key, "out"), { recursive: true });
    await Deno.writeTextFile(join(cache, key, "manifest.json"), "{}");
    for (const file of ["a", "b", "c"]) await Deno.writeTextFile(join(cache, key, "out", file), file);
  }
  const { child, line, output } = spawnWatching(root, ["gc"], /^removing /);
  await line;
  assert.match(
    await interruptedLine(child, output),
    /^interrupted: gc stopped after \d+ of 4000 entries \(each removed whole or not at all\); run it again to finish$/,
  );
  assert.equal(await exists(join(root, "outputs", "run.lock")), false);
  let remaining = 0;
  for (const key of fake) {
    if (!(await exists(join(cache, key)))) continue;
    remaining++;
    assert.ok(await exists(join(cache, key, "manifest.json")), `${key} lost its manifest`);
    for (const file of ["a", "b", "c"]) assert.ok(await exists(join(cache, key, "out", file)), `${key}/out/${file}`);
  }
  assert.ok(remaining > 0, "gc was stopped before the end");

  const again = await cli(root, ["gc"]);
  assert.equal(again.code, 0, again.stderr);
  const names = [...Deno.readDirSync(cache)].map((entry) => entry.name);
  assert.deepEqual(names.filter((name) => fake.includes(name) || name.startsWith(".trash-")), []);
  const check = await cli(root, ["verify", "--cache"]);
  assert.equal(check.code, 0, check.stdout);
  assert.match(check.stdout, /0 corrupt/);
});

Deno.test("D4: Ctrl-C of exp run: one line, exit 130, no run.lock, the experiments queued again; exp start finishes them", async () => {
  const root = await makeStubProject();
  const { child, output } = spawnEngine(root, ["exp", "run", "--set", "train.lr=0.1,0.2", "-j", "1"], {
    STUB_SLEEP_MS_train: "60000",
  });
  await waitFor(() => resumePointWritten(root), 30_000, "the first experiment's train");
  assert.equal(
    await interruptedLine(child, output),
    "interrupted: 1 experiment(s) stopped and queued again, their progress kept (0 done, 0 failed); " +
      "`deno task exp start` resumes them",
  );
  assert.equal(await exists(join(root, "outputs", "run.lock")), false);
  await waitFor(() => Promise.resolve(processesIn(root).length === 0), 10_000, "the stage process to end");
  const status = async (name: string) =>
    JSON.parse(await Deno.readTextFile(join(root, "experiments", `${name}.json`))).status;
  assert.deepEqual([await status("exp-1"), await status("exp-2")], ["queued", "queued"]);
  const start = await cli(root, ["exp", "start"]);
  assert.equal(start.code, 0, start.stderr);
  assert.deepEqual([await status("exp-1"), await status("exp-2")], ["done", "done"]);
});
