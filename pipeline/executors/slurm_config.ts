/**
 * The Slurm config file (default `slurm.json` in the project root): the sbatch options a stage's
 * job is submitted with, for every stage and per stage. Where a stage runs never changes its
 * key, so nothing here goes into a key or the lock.
 *
 *   { "partition": "gpu", "time": "2:00:00", "account": "lab",
 *     "stages": { "train": { "gres": "gpu:1", "cpus": 8, "mem": "32G" } } }
 */
import { UserError } from "../core/errors.ts";

/** sbatch options; a stage's entry under `stages` overrides the top level's, key by key. */
export interface SbatchOptions {
  partition?: string;
  /** generic resources, e.g. "gpu:1" */
  gres?: string;
  /** the job's time limit in any sbatch --time format, e.g. "2:00:00" */
  time?: string;
  account?: string;
  /** CPUs for the job's one task */
  cpus?: number;
  /** memory per node, e.g. "16G" */
  mem?: string;
  /** further sbatch arguments, passed as they are, e.g. ["--qos=high"] */
  extra_args?: string[];
}

export interface SlurmConfig extends SbatchOptions {
  /** Deno's path on the nodes (default: the path of the Deno running the pipeline) */
  deno?: string;
  /** the longest wait between two looks at a job's state, in seconds (default 5) */
  poll_seconds?: number;
  /** how many times to try sbatch when it fails (the controller busy or unreachable; default 6) */
  submit_attempts?: number;
  stages?: Record<string, SbatchOptions>;
}

export const DEFAULT_SLURM_CONFIG = "slurm.json";

type Check = (value: unknown) => boolean;
const text: Check = (value) => typeof value === "string" && value !== "";
const count: Check = (value) => Number.isInteger(value) && (value as number) > 0;
const seconds: Check = (value) => typeof value === "number" && value > 0;
const strings: Check = (value) => Array.isArray(value) && value.every((item) => typeof item === "string");

const SBATCH_KEYS: Record<keyof SbatchOptions, [Check, string]> = {
  partition: [text, "a partition name"],
  gres: [text, 'a --gres value such as "gpu:1"'],
  time: [text, 'a --time value such as "2:00:00"'],
  account: [text, "an account name"],
  cpus: [count, "a positive integer"],
  mem: [text, 'a --mem value such as "16G"'],
  extra_args: [strings, 'a list of sbatch arguments such as ["--qos=high"]'],
};

const TOP_KEYS: Record<string, [Check, string]> = {
  ...SBATCH_KEYS,
  deno: [text, "the path of deno on the nodes"],
  poll_seconds: [seconds, "a number of seconds above 0"],
  submit_attempts: [count, "a positive integer"],
};

/** Read and check a Slurm config file; `stages` are the DAG's stage names. Mistakes are UserErrors. */
export async function readSlurmConfig(path: string, label: string, stages: string[]): Promise<SlurmConfig> {
  let config: unknown;
  try {
    config = JSON.parse(await Deno.readTextFile(path));
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) throw new UserError(`${label} does not exist`);
    throw new UserError(`${label} is not valid JSON: ${(error as Error).message.split("\n")[0]}`);
  }
  checkObject(config, TOP_KEYS, label, ["stages"]);
  const perStage = (config as SlurmConfig).stages ?? {};
  if (typeof perStage !== "object" || perStage === null || Array.isArray(perStage)) {
    throw new UserError(`${label}: 'stages' must be an object of stage name -> sbatch options`);
  }
  for (const [stage, options] of Object.entries(perStage)) {
    if (!stages.includes(stage)) {
      throw new UserError(`${label}: stages.${stage}: no such stage; stages are: ${stages.join(", ")}`);
    }
    checkObject(options, SBATCH_KEYS, `${label}: stages.${stage}`, []);
  }
  return config as SlurmConfig;
}

function checkObject(value: unknown, keys: Record<string, [Check, string]>, label: string, nested: string[]) {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new UserError(`${label} must hold a JSON object`);
  }
  for (const [key, item] of Object.entries(value)) {
    if (nested.includes(key)) continue;
    if (!(key in keys)) {
      throw new UserError(`${label}: unknown key '${key}'; keys: ${[...Object.keys(keys), ...nested].join(", ")}`);
    }
    const [check, expected] = keys[key];
    if (!check(item)) throw new UserError(`${label}: '${key}' must be ${expected} (got ${JSON.stringify(item)})`);
  }
}

/** The sbatch arguments for one stage's job: the top level's options with the stage's over them. */
export function sbatchArgs(config: SlurmConfig, stage: string): string[] {
  const options: SbatchOptions = { ...config, ...config.stages?.[stage] };
  const args: string[] = [];
  if (options.partition) args.push(`--partition=${options.partition}`);
  if (options.account) args.push(`--account=${options.account}`);
  if (options.gres) args.push(`--gres=${options.gres}`);
  if (options.time) args.push(`--time=${options.time}`);
  if (options.cpus) args.push(`--cpus-per-task=${options.cpus}`);
  if (options.mem) args.push(`--mem=${options.mem}`);
  return [...args, ...options.extra_args ?? []];
}
