/**
 * Which executor runs each stage: `--executor slurm` (every stage), `--executor train=slurm` (that
 * stage; the others stay local), repeatable or as a comma list. Where a stage runs never changes
 * its key.
 */
import { resolve } from "node:path";
import { UserError } from "../errors.ts";
import type { Executor } from "../execute.ts";
import { exists } from "../fsutil.ts";
import type { StageDecl } from "../types.ts";
import { localExecutor } from "./local.ts";
import { slurmExecutor } from "./slurm.ts";
import { DEFAULT_SLURM_CONFIG, readSlurmConfig } from "./slurm_config.ts";

const EXECUTORS = ["local", "slurm"] as const;
type ExecutorName = typeof EXECUTORS[number];

/**
 * The executor a run uses, from the --executor values; reads the Slurm config (`configFile`,
 * relative to the project root, or its default slurm.json) when a stage runs on Slurm.
 * Mistakes are UserErrors.
 */
export async function chooseExecutor(
  root: string,
  dag: StageDecl[],
  values: string[],
  configFile: string | undefined,
): Promise<Executor> {
  let all: ExecutorName = "local";
  const byStage = new Map<string, ExecutorName>();
  for (const item of values.flatMap((value) => value.split(",")).map((item) => item.trim()).filter(Boolean)) {
    const [stage, name] = item.includes("=") ? item.split("=", 2) : [null, item];
    if (!EXECUTORS.includes(name as ExecutorName)) {
      throw new UserError(`--executor ${item}: unknown executor '${name}'; executors: ${EXECUTORS.join(", ")}`);
    }
    if (stage === null) all = name as ExecutorName;
    else if (!dag.some((candidate) => candidate.name === stage)) {
      throw new UserError(
        `--executor ${item}: unknown stage '${stage}'; stages are: ${dag.map((s) => s.name).join(", ")}`,
      );
    } else byStage.set(stage, name as ExecutorName);
  }
  if (all === "local" && ![...byStage.values()].includes("slurm") && configFile === undefined) return localExecutor;

  const stages = dag.map((stage) => stage.name);
  const path = resolve(root, configFile ?? DEFAULT_SLURM_CONFIG);
  const absent = configFile === undefined && !(await exists(path));
  const config = absent ? {} : await readSlurmConfig(path, configFile ?? DEFAULT_SLURM_CONFIG, stages);
  const slurm = slurmExecutor(config, absent ? `no ${DEFAULT_SLURM_CONFIG}: the cluster's defaults` : path);
  const executors: Record<ExecutorName, Executor> = { local: localExecutor, slurm };
  return {
    run: (job, jobFile, signal) => executors[byStage.get(job.name) ?? all].run(job, jobFile, signal),
  };
}
