/**
 * Defects a careful new user found (issue 26), each through the real CLI: bad input that must be
 * one line and exit 2 before anything is written (a device as data.path, an infinite number, a
 * lock of the wrong shape, a bad --keep-commits, a batch larger than the split), paths taken as
 * the user wrote them, and messages that say the right thing.
 */
import assert from "node:assert/strict";
import { dirname, join } from "node:path";
import { exists, facegan, partialDirs, projectCopy, scratchDir, tinyDataCopy } from "./support/helpers.ts";
import { cli, makeStubProject } from "./support/stub_project.ts";
import { requires } from "./support/requires.ts";

const TINY = ["--params", "params/tiny.json"];

/** The one line a bad-input command must print: exit 2, no stack trace. */
function oneErrorLine(result: { code: number; stderr: string }, what: string): string {
  assert.equal(result.code, 2, `${what}: ${result.stderr}`);
  const lines = result.stderr.trim().split("\n");
  assert.equal(lines.length, 1, `${what}: ${result.stderr}`);
  assert.match(lines[0], /^error: /, what);
  return lines[0];
}

/** The CLI in a project copy, killed if it has not ended within `limitMs` (a hang is the defect). */
async function faceganWithin(root: string, args: string[], limitMs: number) {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "main.ts", ...args],
    cwd: root,
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let hung = false;
  const timer = setTimeout(() => {
    hung = true;
    child.kill("SIGKILL");
  }, limitMs);
  const output = await child.output();
  clearTimeout(timer);
  assert.equal(hung, false, `${args.join(" ")} did not end within ${limitMs / 1000}s`);
  return { code: output.code, stderr: new TextDecoder().decode(output.stderr) };
}

Deno.test("D2: data.path naming a FIFO or a device: status and --dry-run say so in one line instead of hanging", async () => {
  const root = await projectCopy();
  const fifo = join(await scratchDir(), "photos");
  assert.equal(new Deno.Command("mkfifo", { args: [fifo] }).outputSync().code, 0);
  for (const [path, kind] of [[fifo, "a FIFO"], ["/dev/zero", "a character device"]]) {
    for (const args of [["status"], ["run", "--dry-run"]]) {
      const source = ["--set", "data.source=path", "--set", `data.path=${path}`];
      const result = await faceganWithin(root, [...args, ...TINY, ...source], 60_000);
      const line = oneErrorLine(result, `${args.join(" ")} ${path}`);
      assert.equal(
        line,
        `error: data.path names ${path}, which is ${kind}, not a folder or a regular file; point data.path at a ` +
          "folder or a file",
      );
    }
  }
  assert.equal(await exists(join(root, "outputs", "cache")), false, "nothing written");
});

Deno.test("D3: an infinite number (1e400) in any numeric param is refused in one line before any stage runs", async () => {
  const root = await projectCopy();
  const cases: [string, string][] = [
    ["train.lr=1e400", "a number >= 5e-324"],
    ["train.lr_g=1e400", "a number >= 5e-324 or null"],
    ["train.gp_weight=1e400", "a number >= 0"],
    ["data.timeout_s=-1e400", "a number >= 1"],
  ];
  for (const [set, accepts] of cases) {
    const [key, value] = set.split("=");
    for (const args of [["status"], ["run"]]) {
      const result = await facegan(root, [...args, ...TINY, "--set", set]);
      const shown = value.startsWith("-") ? "-Infinity" : "Infinity";
      assert.equal(
        oneErrorLine(result, `${args[0]} --set ${set}`),
        `error: --set ${set}: param '${key}' must be finite (${accepts}), got ${shown}`,
      );
    }
  }
  assert.equal(await exists(join(root, "outputs", "cache")), false, "no stage ran");
});

Deno.test("D7: absolute paths stay absolute: --params /abs/file.json, exp apply --to /abs and ../ write where they say", async () => {
  const root = await projectCopy();
  const outside = await scratchDir();
  const params = join(outside, "mine.json");
  await Deno.copyFile(join(root, "params", "tiny.json"), params);
  const status = await facegan(root, ["status", "--params", params]);
  assert.equal(status.code, 0, status.stderr);

  const queued = await facegan(root, ["exp", "run", ...TINY, "--queue", "--set", "train.lr=0.0003"]);
  assert.equal(queued.code, 0, queued.stderr);
  const target = join(outside, "deeper", "applied.json");
  const sibling = join(dirname(root), `${root.split("/").pop()}-sibling.json`);
  for (const [to, written] of [[target, target], [`../${sibling.split("/").pop()}`, sibling]]) {
    const apply = await facegan(root, ["exp", "apply", "exp-1", "--to", to]);
    assert.equal(apply.code, 0, apply.stderr);
    assert.ok(await exists(written), `written at ${written}`);
    assert.equal(JSON.parse(await Deno.readTextFile(written)).train.lr, 0.0003);
    assert.match(apply.stderr, new RegExp(`wrote exp-1's params into ${written.replaceAll(".", "\\.")};`));
    assert.match(apply.stderr, new RegExp(`--params ${written.replaceAll(".", "\\.")}\``));
    await Deno.remove(written);
  }
  assert.equal(await exists(join(root, outside.slice(1))), false, "nothing under the project named like the path");
  const restored = await facegan(root, ["status", "--params", target]);
  assert.equal(restored.code, 2, "the file is gone again: an absolute path is looked up where it says");
  assert.match(restored.stderr, new RegExp(`params file ${target.replaceAll(".", "\\.")} not found`));
  await Deno.remove(sibling).catch(() => {});
});

Deno.test("D8: gc --keep-commits must be a whole number >= 0: abc, -1, 1.5 -> one line, exit 2, nothing removed", async () => {
  const root = await makeStubProject();
  assert.equal((await cli(root, ["run"])).code, 0);
  await cli(root, ["run", "--set", "train.lr=0.5"]); // the first run's train, evaluate and render are now unreferenced
  const cache = join(root, "outputs", "cache");
  const before = [...Deno.readDirSync(cache)].map((entry) => entry.name).sort();
  for (const value of ["abc", "-1", "1.5", ""]) {
    const result = await cli(root, ["gc", `--keep-commits=${value}`]);
    assert.equal(
      oneErrorLine(result, value),
      `error: --keep-commits ${value}: expected a whole number >= 0 (how many recent commits' locks keep their ` +
        "entries), e.g. --keep-commits 20",
    );
  }
  assert.deepEqual([...Deno.readDirSync(cache)].map((entry) => entry.name).sort(), before, "nothing removed");
  const zero = await cli(root, ["gc", "--dry-run", "--keep-commits=0"]);
  assert.equal(zero.code, 0, zero.stderr);
  assert.match(zero.stdout, /the last 0 commits/);
});

Deno.test("D9: train.batch_size larger than the training split: one line naming both, exit 2, no partial output kept", async () => {
  const root = await tinyDataCopy();
  const result = await facegan(root, ["run", ...TINY, "--until", "train", "--set", "train.batch_size=1000"]);
  assert.equal(result.code, 2, result.stderr);
  const outcome = result.stderr.split("\n").filter((line) => /^(error|warning|interrupted)\b|kept/.test(line));
  assert.deepEqual(outcome, [
    "error: train: train.batch_size 1000 is larger than the 200 images of the training split (shard's train.json): " +
    "lower train.batch_size to 200 or less, or give it more data",
  ]);
  assert.doesNotMatch(result.stderr, /train: backend/, "refused before the backend loads");
  assert.deepEqual(await partialDirs(root), [], "nothing to resume: no partial output left");
});

Deno.test("D10: a pipeline.lock.json of the wrong shape: one line naming it and what is wrong, exit 2", async () => {
  const root = await projectCopy();
  const cases: [string, string][] = [
    ["[]", "it is not a JSON object with a 'stages' object"],
    ['{"stages":{"train":{"key":5}}}', "stages.train.key is not a 64-digit hex key"],
    ['{"version":1,"stages":{"train":null}}', "stages.train is not an object"],
  ];
  for (const [text, what] of cases) {
    await Deno.writeTextFile(join(root, "pipeline.lock.json"), text);
    for (const args of [["status"], ["run", "--dry-run"], ["run"], ["gc", "--dry-run"]]) {
      const line = oneErrorLine(await facegan(root, [...args, ...TINY]), `${args.join(" ")} ${text}`);
      assert.equal(
        line,
        `error: pipeline.lock.json: ${what}; restore it (\`git checkout pipeline.lock.json\`) or delete it, ` +
          "then run again",
      );
    }
  }
  assert.equal(await exists(join(root, "outputs", "cache")), false, "no stage ran");
  assert.equal(await exists(join(root, "outputs", "run.lock")), false);
});

Deno.test("D11: messages say the right thing: no echo of a params file, no prototype keys, a symlink in an entry", async (t) => {
  const root = await projectCopy();

  await t.step("an invalid-JSON params file: its line, never its content", async () => {
    const secret = join(await scratchDir(), "shadow");
    await Deno.writeTextFile(secret, "root:*:20210:0:99999:7:::\nalice:$y$j9T$secret:20210:0:99999:7:::\n");
    await Deno.symlink(secret, join(root, "link.json"));
    const line = oneErrorLine(await facegan(root, ["status", "--params", "link.json"]), "shadow");
    assert.doesNotMatch(line, /root:|\*:2|alice|secret/);
    assert.match(line, /^error: link\.json:\d+: invalid JSON \(.*\): fix the file$/);
  });

  await t.step("--set constructor=1 and other keys of Object.prototype are unknown params", async () => {
    for (const key of ["constructor", "toString", "__proto__", "hasOwnProperty"]) {
      const line = oneErrorLine(await facegan(root, ["status", "--set", `${key}=1`]), key);
      assert.match(line, new RegExp(`^error: --set ${key}=1: unknown param '${key}'; `));
      assert.doesNotMatch(line, /function|default undefined/);
    }
  });

  await t.step("verify --cache sees a symlink to a folder added inside an entry", async () => {
    const stub = await makeStubProject();
    assert.equal((await cli(stub, ["run"])).code, 0);
    const key = JSON.parse(await Deno.readTextFile(join(stub, "pipeline.lock.json"))).stages.crop.key;
    await Deno.symlink("/etc", join(stub, "outputs", "cache", key, "out", "etc"));
    const check = await cli(stub, ["verify", "--cache"]);
    assert.equal(check.code, 1, check.stdout);
    assert.match(check.stdout, new RegExp(`^CORRUPT  ${key}  etc not in manifest \\(a symlink\\)$`, "m"));
  });
});

const ROOT_MISSING = Deno.uid() === 0 ? null : "not root: root's advice for a file even root cannot read";

Deno.test({
  ...requires("D11: a path even root cannot read (/proc) gets no chmod advice", ROOT_MISSING),
  fn: async () => {
    const root = await projectCopy();
    const result = await facegan(root, ["status", ...TINY, "--set", "data.source=path", "--set", "data.path=/proc"]);
    const line = oneErrorLine(result, "/proc");
    assert.match(line, /^error: cannot read a folder data\.path names: \/proc\/\S+ \(permission denied: /);
    assert.doesNotMatch(line, /chmod a\+r/);
    assert.match(line, /even root is refused/);
  },
});
