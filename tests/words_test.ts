/** ui/words.ts, in process: the lines people read, each built in one place. */
import assert from "node:assert/strict";
import {
  doneLine,
  dryRunLine,
  eventLine,
  interruptedLine,
  plain,
  pushedLine,
  shortHash,
  stageColumn,
  stageFailedLine,
  staleUpstreamLine,
  verifyLine,
  words,
} from "../pipeline/ui/words.ts";
import { EXIT_HEAP_LIMIT, EXIT_KILLED, EXIT_USER_ERROR } from "../pipeline/core/errors.ts";

const KEY = "0123456789abcdef".repeat(4);

Deno.test("stage lines start with the stage in a 9-wide column and show a key by its first 12 digits", () => {
  assert.equal(stageColumn("crop"), "crop     ");
  assert.equal(shortHash(KEY), "0123456789ab");
  assert.equal(eventLine({ kind: "cached", stage: "crop", key: KEY }), "✓ crop      cached   0123456789ab");
  assert.equal(
    eventLine({ kind: "ran", stage: "train", key: KEY, wallSeconds: 1.5, files: 3 }),
    "✓ train     ran in 1.5s  -> 0123456789ab (3 files)",
  );
  assert.equal(pushedLine("crop", KEY, 2, 10), "⇡ crop      pushed 0123456789ab  (2 files, 10 bytes sent)");
  assert.equal(pushedLine("crop", KEY, 2, null), "✓ crop      already on the remote  0123456789ab");
});

Deno.test("reasons in words: a param change shows both values, a data change its first five files unless full", () => {
  assert.equal(words([{ kind: "param", key: "train.lr", before: 0.1, after: 0.2 }]), "param train.lr: 0.1 -> 0.2");
  const files = ["a", "b", "c", "d", "e", "f"];
  assert.equal(
    words([{ kind: "data", key: "data.path", files }]),
    "data named by data.path changed: a, b, c, d, e, ... (6 files)",
  );
  assert.equal(
    words([{ kind: "data", key: "data.path", files }], true),
    "data named by data.path changed: a, b, c, d, e, f",
  );
});

Deno.test("dry-run and verify lines: each action and outcome in its own words", () => {
  assert.equal(dryRunLine("crop", "cached", KEY, "", plain), "✓ crop      cached   0123456789ab");
  assert.equal(dryRunLine("crop", "pull", KEY, "", plain), "⇣ crop      would pull 0123456789ab from the remote cache");
  assert.equal(dryRunLine("crop", "run", null, "forced (--from)", plain), "• crop      would run: forced (--from)");
  assert.equal(verifyLine("crop", { kind: "reproducible", output: KEY }), "crop      reproducible  0123456789ab");
  assert.equal(
    verifyLine("crop", { kind: "differs", files: "a.png", environment: "backend: cpu -> wasm" }),
    "crop      DIFFERS  a.png\n          note: backend: cpu -> wasm",
  );
});

Deno.test("a run's end: done, interrupted with what was kept, or why a stage failed with its memory params", () => {
  assert.equal(
    doneLine("1.20", 2, 5),
    "done in 1.20s: 2 ran, 5 cached; lock: pipeline.lock.json, timings: outputs/latest/summary.json",
  );
  assert.equal(
    interruptedLine([{ stage: "train", kept: true, resumePoint: "epoch 4 of 9" }]),
    "interrupted: train's progress kept (epoch 4 of 9); run again to resume",
  );
  assert.equal(
    interruptedLine([{ stage: "crop", kept: false, resumePoint: null }]),
    "interrupted: crop stopped (its partial output removed); run again to continue",
  );
  // The runner said it already (bad input): the engine adds nothing.
  assert.equal(stageFailedLine("train", EXIT_USER_ERROR, []), null);
  assert.match(stageFailedLine("train", EXIT_HEAP_LIMIT, ["train.batch=64"])!, /its memory grows with train\.batch=64/);
  assert.match(stageFailedLine("train", EXIT_KILLED, [])!, /killed \(SIGKILL\)/);
  assert.equal(
    staleUpstreamLine("crop", [{ kind: "new" }]),
    "error: stage crop is not up to date (never run (no entry in pipeline.lock.json)); run `deno task pipeline --until crop` first",
  );
});
