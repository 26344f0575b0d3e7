/**
 * Which executor runs each stage: `--executor slurm` (every stage), `--executor train=slurm` (that
 * stage; the others stay local), repeatable or as a comma list. Where a stage runs never changes
 * its key.
 */
import { resolve } from "node:path";
import { UserError } from "../core/errors.ts";
import type { Executor } from "../core/execute.ts";
import { exists } from "../storage/fsutil.ts";
import type { StageDecl } from "../core/types.ts";
import { localExecutor } from "./local.ts";
import { slurmExecutor } from "./slurm.ts";
import { DEFAULT_SLURM_CONFIG, readSlurmConfig } from "./slurm_config.ts";

const EXECUTORS = ["local", "slurm"] as const;
type ExecutorName = typeof EXECUTORS[number];

/** The executor a run uses, and where it runs each stage. */
export interface ChosenExecutor extends Executor {
  /** the stage runs on this machine (not as a cluster job) */
  runsHere(stage: string): boolean;
}

/**
 * The executor a run uses, from the --executor values; reads the Slurm config (`configFile`,
 * relative to the project root, or its default slurm.json, which must exist when a stage runs on
 * Slurm). Whatever runs new jobs, it can attach to a Slurm job a killed run left going. Mistakes
 * are UserErrors.
 */
export async function chooseExecutor(
  root: string,
  dag: StageDecl[],
  values: string[],
  configFile: string | undefined,
): Promise<ChosenExecutor> {
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
  const where = (stage: string) => byStage.get(stage) ?? all;
  const onSlurm = dag.some((stage) => where(stage.name) === "slurm");
  const path = resolve(root, configFile ?? DEFAULT_SLURM_CONFIG);
  if (onSlurm && configFile === undefined && !(await exists(path))) {
    throw new UserError(
      `--executor ${values.join(",")} needs the Slurm config ${DEFAULT_SLURM_CONFIG} (sbatch options: partition, ` +
        `time, gres, ...): write one (\`{}\` takes the cluster's defaults) or name one with --slurm-config FILE`,
    );
  }
  const read = onSlurm || configFile !== undefined;
  const stages = dag.map((stage) => stage.name);
  const config = read ? await readSlurmConfig(path, configFile ?? DEFAULT_SLURM_CONFIG, stages) : {};
  // Attaching only watches a job: without a config, the default poll interval does.
  const slurm = slurmExecutor(config, path);
  const executors: Record<ExecutorName, Executor> = { local: localExecutor, slurm };
  return {
    run: (job, jobFile, signal, output, submitted) =>
      executors[where(job.name)].run(job, jobFile, signal, output, submitted),
    attach: slurm.attach,
    runsHere: (stage) => where(stage) === "local",
  };
}
