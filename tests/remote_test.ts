/**
 * The HTTP remote cache against a real nginx (WebDAV) on 127.0.0.1: push from one copy of the
 * project, pull into empty ones, a run that pulls by itself, a pull cut short, a tampered file on
 * the server, a damaged local entry, and credentials that never leak.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { type CommandResult, exists, facegan, projectCopy, waitFor } from "./support/helpers.ts";
import { nginxMissing, startNginx } from "./support/nginx.ts";
import { listFiles } from "../pipeline/storage/fsutil.ts";
import { requires } from "./support/requires.ts";

const TINY = ["--params", "params/tiny.json"];
const STAGES = ["download", "crop", "shard", "train", "export", "evaluate", "render"];
const TOKEN = "tok-3f9c1e7ab2";
const BASIC = "alice:pw-51d0c9";
const missing = nginxMissing();

Deno.test({
  ...requires("remote cache on nginx: push, pull, auto-pull, resume, tampering, damage, credentials", missing),
  fn: async (t) => {
    const server = await startNginx([`Bearer ${TOKEN}`, `Basic ${btoa(BASIC)}`]);
    const withToken = { FACEGAN_REMOTE: server.url, FACEGAN_REMOTE_TOKEN: TOKEN };
    const outputs: CommandResult[] = [];
    const roots: string[] = [];
    const cli = async (root: string, args: string[], env: Record<string, string> = withToken) => {
      const result = await facegan(root, args, env);
      outputs.push(result);
      return result;
    };
    const copy = async () => {
      const root = await projectCopy();
      roots.push(root);
      return root;
    };
    const lockOf = (root: string) => Deno.readTextFile(join(root, "pipeline.lock.json"));
    const ran = (result: CommandResult) => [...result.stderr.matchAll(/✓ (\w+)\s+ran in/g)].map((m) => m[1]);
    try {
      await t.step("D11: push with nothing in the local cache says why nothing was pushed", async () => {
        const push = await cli(await copy(), ["push", ...TINY]);
        assert.equal(push.code, 0, push.stderr);
        assert.equal(
          push.stderr.trim().split("\n").at(-1),
          "nothing pushed: no stage's entry is in the local cache; run `deno task pipeline` first, then push",
        );
      });

      const a = await copy();
      const first = await cli(a, ["run", ...TINY]);
      assert.equal(first.code, 0, first.stderr);
      assert.deepEqual(ran(first), STAGES, "an empty remote: every stage runs");
      const lockA = await lockOf(a);
      const keys = JSON.parse(lockA).stages;

      await t.step("push of a stage whose local entry is damaged is refused, and nothing is sent", async () => {
        const file = join(a, "outputs", "cache", keys.train.key, "out", "generator", "weights.bin");
        const good = await Deno.readFile(file);
        const bad = good.slice();
        bad[0] ^= 0xff;
        await Deno.writeFile(file, bad);
        try {
          const push = await cli(a, ["push", ...TINY]);
          assert.equal(push.code, 2, push.stderr);
          const errors = push.stderr.split("\n").filter((line) => line.startsWith("error"));
          assert.equal(errors.length, 1, push.stderr);
          assert.match(
            errors[0],
            /^error: push refused, nothing sent: .*train \(\w+: generator\/weights\.bin changed\)/,
          );
          assert.deepEqual(await listFiles(server.root), [], "the server holds nothing");
        } finally {
          await Deno.writeFile(file, good);
        }
      });

      await t.step("push sends every entry: its files under /cas, the entry under /ac", async () => {
        const push = await cli(a, ["push", ...TINY]);
        assert.equal(push.code, 0, push.stderr);
        for (const stage of STAGES) {
          assert.match(push.stderr, new RegExp(`⇡ ${stage}\\s+pushed`));
          const entry = JSON.parse(await Deno.readTextFile(join(server.root, "ac", keys[stage].key)));
          assert.equal(entry.manifest.output, keys[stage].output);
          for (const file of entry.manifest.files) assert.ok(await exists(join(server.root, "cas", file.sha256)));
        }
        const again = await cli(a, ["push", ...TINY]);
        for (const stage of STAGES) assert.match(again.stderr, new RegExp(`✓ ${stage}\\s+already on the remote`));
      });

      await t.step("pull into an empty copy: its pipeline runs no stage and its lock equals the first's", async () => {
        const b = await copy();
        const pull = await cli(b, ["pull", ...TINY]);
        assert.equal(pull.code, 0, pull.stderr);
        for (const stage of STAGES) assert.match(pull.stderr, new RegExp(`⇣ ${stage}\\s+pulled`));
        const run = await cli(b, ["run", ...TINY]);
        assert.equal(run.code, 0, run.stderr);
        assert.deepEqual(ran(run), []);
        for (const stage of STAGES) assert.match(run.stderr, new RegExp(`✓ ${stage}\\s+cached`));
        assert.equal(await lockOf(b), lockA);
      });

      await t.step("a run pulls what only the remote has, before running (basic auth)", async () => {
        const c = await copy();
        const withBasic = { FACEGAN_REMOTE: server.url, FACEGAN_REMOTE_BASIC: BASIC };
        const status = await cli(c, ["status", ...TINY], withBasic);
        assert.match(status.stdout, /download\s+remote\s+\w+\s+on the remote cache/);
        const run = await cli(c, ["run", ...TINY], withBasic);
        assert.equal(run.code, 0, run.stderr);
        assert.deepEqual(ran(run), []);
        for (const stage of STAGES) assert.match(run.stderr, new RegExp(`⇣ ${stage}\\s+pulled`));
        assert.equal(await lockOf(c), lockA);
      });

      await t.step("wrong credentials: one line naming the variables, exit 2", async () => {
        const d = await copy();
        const pull = await cli(d, ["pull", ...TINY], { FACEGAN_REMOTE: server.url, FACEGAN_REMOTE_TOKEN: "wrong" });
        assert.equal(pull.code, 2);
        assert.match(pull.stderr.trim(), /^error: GET \S+\/ac\/\w+ was refused: HTTP 401 .*FACEGAN_REMOTE_TOKEN/);
        assert.equal(pull.stderr.trim().split("\n").length, 1, pull.stderr);
      });

      await t.step("a pull killed midway resumes: the next pull completes it", async () => {
        const e = await copy();
        // /slow/ serves the same files at 16 KiB/s: the kill lands inside the download stage's 240 files.
        const child = new Deno.Command(Deno.execPath(), {
          args: ["run", "-A", "main.ts", "pull", ...TINY],
          cwd: e,
          env: { FACEGAN_REMOTE: `${server.url}/slow`, FACEGAN_REMOTE_TOKEN: TOKEN },
          stdout: "null",
          stderr: "null",
        }).spawn();
        const partial = join(e, "outputs", "cache", `.partial-${keys.download.key}`, "out");
        await waitFor(async () => (await listFiles(partial).catch(() => [])).length >= 2, 60_000, "a pull to start");
        child.kill("SIGKILL");
        await child.status;
        assert.equal(await exists(join(e, "outputs", "cache", keys.download.key)), false, "nothing promoted");
        const pull = await cli(e, ["pull", ...TINY]);
        assert.equal(pull.code, 0, pull.stderr);
        const run = await cli(e, ["run", ...TINY]);
        assert.deepEqual(ran(run), []);
        assert.equal(await lockOf(e), lockA);
        const check = await cli(e, ["verify", "--cache", ...TINY]);
        assert.equal(check.code, 0, check.stdout);
      });

      await t.step("a file the server changed is refused with one line and nothing is promoted", async () => {
        const manifest = JSON.parse(await Deno.readTextFile(join(server.root, "ac", keys.train.key))).manifest;
        const weights = manifest.files.find((file: { path: string }) => file.path === "generator/weights.bin");
        const blob = join(server.root, "cas", weights.sha256);
        const bytes = await Deno.readFile(blob);
        bytes[bytes.length - 1] ^= 0x01;
        await Deno.writeFile(blob, bytes);
        const f = await copy();
        const pull = await cli(f, ["pull", ...TINY]);
        assert.equal(pull.code, 2, pull.stderr);
        const error = pull.stderr.trim().split("\n").filter((line) => line.startsWith("error"));
        assert.equal(error.length, 1, pull.stderr);
        assert.match(
          error[0],
          /^error: \S+\/cas\/\w+ \(train: generator\/weights\.bin\) sent \d+ bytes with sha256 \w+, not the content its name promises: refused, nothing promoted$/,
        );
        assert.equal(await exists(join(f, "outputs", "cache", keys.train.key)), false, "train not promoted");
        await Deno.writeFile(
          blob,
          await Deno.readFile(join(a, "outputs", "cache", keys.train.key, "out", weights.path)),
        );
      });

      await t.step("D6: a run that meets a corrupt blob on the remote warns and builds that stage here", async () => {
        const manifest = JSON.parse(await Deno.readTextFile(join(server.root, "ac", keys.train.key))).manifest;
        const weights = manifest.files.find((file: { path: string }) => file.path === "generator/weights.bin");
        const blob = join(server.root, "cas", weights.sha256);
        const good = await Deno.readFile(blob);
        const bad = good.slice();
        bad[bad.length - 1] ^= 0x01;
        await Deno.writeFile(blob, bad);
        try {
          const g = await copy();
          const run = await cli(g, ["run", ...TINY]);
          assert.equal(run.code, 0, run.stderr);
          const warnings = run.stderr.split("\n").filter((line) => line.startsWith("warning"));
          assert.equal(warnings.length, 1, run.stderr);
          assert.match(
            warnings[0],
            /^warning: train: not pulled \(\S+\/cas\/\w+ \(train: generator\/weights\.bin\) sent \d+ bytes with sha256 \w+, not the content its name promises: refused, nothing promoted\); building it here$/,
          );
          assert.deepEqual(ran(run), ["train"], "only train is built here; the rest is pulled");
          assert.equal(await lockOf(g), lockA, "built here, train gives the same bytes as the remote's");
          const check = await cli(g, ["verify", "--cache", ...TINY]);
          assert.equal(check.code, 0, check.stdout);
        } finally {
          await Deno.writeFile(blob, good);
        }
      });

      await t.step("the credentials appear in no output, log, lock or cache file", async () => {
        const secrets = [TOKEN, BASIC, btoa(BASIC)];
        for (const result of outputs) {
          for (const secret of secrets) assert.ok(!(result.stdout + result.stderr).includes(secret), secret);
        }
        for (const root of roots) {
          const files = [
            "pipeline.lock.json",
            ...(await listFiles(join(root, "outputs")).catch(() => [])).map((f) => `outputs/${f}`),
          ];
          for (const file of files) {
            const text = new TextDecoder().decode(await Deno.readFile(join(root, file)).catch(() => new Uint8Array()));
            for (const secret of secrets) assert.ok(!text.includes(secret), `${secret} in ${root}/${file}`);
          }
        }
      });
    } finally {
      await server.stop();
    }
  },
});
