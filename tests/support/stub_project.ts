/**
 * A throwaway project with stub stages shaped like facegan's DAG, for testing the engine
 * without tensors: each stage appends its name to runs.log (so a test sees what ran) and writes
 * a small artifact derived from its inputs and params.
 */
import { join } from "node:path";
import { type CommandResult, REPO, run, scratchDir } from "./helpers.ts";

const ENGINE_CLI = new URL("../../pipeline/cli.ts", import.meta.url).href;

const STAGE_CODE = `
const VARIANT = 1;
export async function run(ctx) {
  // train.ignore_sigterm: a stage slow to stop; it notes each SIGTERM it gets (<stage>.sigterm) and goes on.
  if (ctx.params["train.ignore_sigterm"]) {
    Deno.addSignalListener("SIGTERM", () => Deno.writeTextFileSync(ctx.root + "/" + ctx.name + ".sigterm", "SIGTERM\\n"));
  }
  await Deno.writeTextFile(ctx.root + "/runs.log", ctx.name + "\\n", { append: true });
  await Deno.writeTextFile(ctx.root + "/" + ctx.name + ".pid", String(Deno.pid));
  const hog = [];
  for (let mb = 0; mb < (ctx.params["train.hog_mb"] ?? 0); mb++) hog.push(new Array(131072).fill(mb + 0.5));
  if (ctx.params["render.fill_disk"]) await fillDisk(ctx.root + "/outputs/filler");
  // STUB_SLEEP_MS_<stage>: a sleep that is not a param (not in the key), for tests of concurrent runs.
  const sleep = Number(Deno.env.get("STUB_SLEEP_MS_" + ctx.name) ?? ctx.params["train.sleep_ms"] ?? 0);
  let text = ctx.name + " " + JSON.stringify(ctx.params) + " variant " + VARIANT + "\\n";
  for (const [name, dir] of Object.entries(ctx.inputs)) {
    text += await Deno.readTextFile(dir + "/" + name + ".txt");
  }
  await Deno.writeTextFile(ctx.outDir + "/" + ctx.name + ".txt", "partial");
  if (sleep) {
    await ctx.resumePoint("step 1 of 2");
    await new Promise((resolve) => setTimeout(resolve, sleep));
  }
  // STUB_HOLD_<stage>: a file the stage waits for before it finishes (not a param: not in the key),
  // so a test decides when a run ends instead of guessing how long it takes.
  const hold = Deno.env.get("STUB_HOLD_" + ctx.name);
  while (hold && !(await Deno.stat(hold).then(() => true, () => false))) {
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  await Deno.writeTextFile(ctx.outDir + "/" + ctx.name + ".txt", text);
  if (ctx.name === "evaluate") {
    const lr = ctx.params["train.lr"] ?? 0;
    await Deno.writeTextFile(ctx.outDir + "/metrics.json", JSON.stringify({
      values: { score: lr * 1000, quality: 1 - lr }, floor: { score: 0.1 }, floor_n: { score: 4 }, better: { score: "lower", quality: "higher" },
    }));
  }
  ctx.recordEnvironment("backend", "stub");
}

/** Take every free byte of the disk, so that the engine's next write finds it full. */
async function fillDisk(path) {
  const file = await Deno.open(path, { write: true, create: true });
  try {
    while (true) await file.write(new Uint8Array(4096));
  } catch {
    file.close();
  }
}
`;

export const STUB_PARAMS = {
  data: { seed: 1, path: "" },
  crop: { box: "celeba" },
  train: { lr: 0.0002, sleep_ms: 0, epochs: 1, hog_mb: 0, ignore_sigterm: false },
  eval: { n_samples: 10 },
  render: { fill_disk: false },
};

/** A schema for the stub's params: the engine checks it without knowing what the params mean. */
const STUB_SCHEMA = {
  "data.seed": { type: "integer", min: 0, description: "seed" },
  "data.path": { type: "string", description: "a local folder whose content enters download's key" },
  "crop.box": { type: "string", choices: ["celeba", "dcgan"], description: "box" },
  "train.lr": { type: "number", min: 0, description: "rate" },
  "train.sleep_ms": { type: "integer", min: 0, description: "how long train sleeps" },
  "train.epochs": { type: "integer", min: 1, description: "epochs" },
  "eval.n_samples": { type: "integer", min: 1, description: "samples" },
  "train.hog_mb": { type: "integer", min: 0, description: "MiB of JS arrays train holds (to run out of heap)" },
  "train.ignore_sigterm": { type: "boolean", description: "train ignores SIGTERM (a stage slow to stop)" },
  "render.fill_disk": { type: "boolean", description: "render fills the disk under outputs/" },
};

const STUB_DAG = [
  { name: "download", deps: [], params: ["data.seed", "data.path"], external: ["data.path"] },
  { name: "crop", deps: ["download"], params: ["crop.box"] },
  { name: "resize", deps: ["crop"], params: [] },
  { name: "shard", deps: ["resize"], params: ["data.seed"] },
  {
    name: "train",
    deps: ["shard"],
    params: ["train.lr", "train.sleep_ms", "train.epochs", "train.hog_mb", "train.ignore_sigterm"],
    resumable: true,
    memory: ["train.hog_mb", "eval.n_samples"],
  },
  { name: "evaluate", deps: ["train", "shard"], params: ["eval.n_samples", "train.lr"], metrics: "metrics.json" },
  { name: "render", deps: ["train", "evaluate"], params: ["render.fill_disk"] },
];

/** Create the stub project in a new temp dir and return its root. */
export async function makeStubProject(): Promise<string> {
  const root = await scratchDir({ prefix: "facegan-stub-" });
  await Deno.mkdir(join(root, "stages"));
  for (const stage of STUB_DAG) {
    // One file per stage, importing a shared helper, so editing a file affects only its stage.
    await Deno.writeTextFile(join(root, "stages", `${stage.name}.js`), `export { run } from "./common.js";\n`);
  }
  await Deno.writeTextFile(join(root, "stages", "common.js"), STAGE_CODE);
  // crop gets its own copy so a test can edit crop alone
  await Deno.writeTextFile(join(root, "stages", "crop.js"), STAGE_CODE + "// crop\n");
  const dag = STUB_DAG.map((stage) => ({ ...stage, module: `stages/${stage.name}.js` }));
  await Deno.writeTextFile(join(root, "params.json"), JSON.stringify(STUB_PARAMS, null, 2));
  await Deno.writeTextFile(
    join(root, "main.ts"),
    `import { main } from ${JSON.stringify(ENGINE_CLI)};
const dag = ${JSON.stringify(dag)};
const schema = ${JSON.stringify(STUB_SCHEMA)};
Deno.exit(await main({ name: "stub", envPrefix: "STUB_", root: ${JSON.stringify(root)}, dag, schema }, Deno.args));
`,
  );
  return root;
}

/** Run the stub project's CLI as a real subprocess. */
export function cli(root: string, args: string[], env: Record<string, string> = {}): Promise<CommandResult> {
  return run(root, cliArgs(root, args), env);
}

/** The deno arguments of a stub CLI run (to spawn it by hand). */
export function cliArgs(root: string, args: string[]): string[] {
  return ["run", "-A", "--config", join(REPO, "deno.json"), join(root, "main.ts"), ...args];
}

/** Stage names appended to runs.log since the last call (which empties it). */
export async function takeRuns(root: string): Promise<string[]> {
  const path = join(root, "runs.log");
  const text = await Deno.readTextFile(path).catch(() => "");
  await Deno.writeTextFile(path, "");
  return text.split("\n").filter(Boolean);
}
