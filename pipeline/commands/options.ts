/**
 * The options more than one command takes (`run`, `status`, `verify`, `exp ...`): one
 * table, so each is spelled and parsed the same way everywhere.
 */
export const SHARED_OPTIONS = {
  params: { type: "string" },
  set: { type: "string", multiple: true },
  json: { type: "boolean" },
  executor: { type: "string", multiple: true },
  "slurm-config": { type: "string" },
  help: { type: "boolean", short: "h" },
} as const;
