/** outputs/latest: links to the artifacts the last run used, the files stages publish, and its summary. */
import { join } from "node:path";
import { stageByName } from "../core/dag.ts";
import type { StageOutcome } from "../core/events.ts";
import { removeIfExists, tempPath, writeFileAtomic } from "./fsutil.ts";
import type { Workspace } from "./workspace.ts";

/**
 * outputs/latest/<stage> -> the artifact the run used; declared files copied beside them; and
 * summary.json, this run's record (what ran and why, wall times): the volatile facts the lock
 * leaves out.
 */
export async function publishLatest(workspace: Workspace, latest: string, outcomes: StageOutcome[]): Promise<void> {
  await Deno.mkdir(latest, { recursive: true });
  for (const outcome of outcomes) {
    const target = workspace.cache.outDir(outcome.record.key);
    const link = join(latest, outcome.stage);
    const temp = tempPath(link);
    await removeIfExists(temp);
    try {
      await Deno.symlink(target, temp);
      await Deno.rename(temp, link);
    } catch (error) {
      await removeIfExists(temp);
      throw error;
    }
    for (const file of stageByName(workspace.dag, outcome.stage).publish ?? []) {
      await writeFileAtomic(join(latest, file), await Deno.readFile(join(target, file)));
    }
  }
  const summary = {
    finished_at: new Date().toISOString(),
    params_file: workspace.paramsFile,
    stages: Object.fromEntries(outcomes.map((outcome) => [outcome.stage, {
      action: outcome.action,
      key: outcome.record.key,
      output: outcome.record.output,
      wall_s: outcome.wallSeconds ?? null,
      peak_rss_mb: outcome.peakRssMb ?? null,
      reasons: outcome.reasons,
    }])),
  };
  await writeFileAtomic(join(latest, "summary.json"), JSON.stringify(summary, null, 2) + "\n");
}
