/**
 * A real single-node Slurm cluster for tests: munged, slurmctld and slurmd in a temp dir, on
 * 127.0.0.1 with free ports, no systemd; client commands reach it through SLURM_CONF. Every
 * daemon is stopped by its pid.
 */
import { join } from "node:path";
import { exists, scratchDir, waitFor } from "./helpers.ts";

const COMMANDS = ["munged", "mungekey", "slurmctld", "slurmd", "sbatch", "scontrol", "scancel", "squeue", "sinfo"];

/** A command's path (daemons live in /usr/sbin, which a non-login PATH may lack), or null. */
function which(command: string): string | null {
  for (const dir of [...(Deno.env.get("PATH") ?? "").split(":"), "/usr/sbin", "/sbin"]) {
    try {
      if (Deno.statSync(join(dir, command)).isFile) return join(dir, command);
    } catch { /* not here */ }
  }
  return null;
}

/** Why no cluster can start here, or null. */
export function slurmMissing(): string | null {
  const missing = COMMANDS.filter((command) => !which(command));
  if (missing.length) return `${missing.join(", ")} not found; apt-get install slurm-wlm munge`;
  if (Deno.uid() !== 0) return "slurmd must run as root to start jobs";
  return null;
}

function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

export class SlurmCluster {
  private constructor(
    readonly dir: string,
    readonly env: Record<string, string>,
    private readonly daemons: Deno.ChildProcess[],
    /** whether `hide` took effect: the node sees an empty dir there */
    readonly hidden: boolean,
  ) {}

  /**
   * Start the cluster. Each dir in `hide` (which must exist) is covered, in slurmd's and so its
   * jobs' view only, by an empty tmpfs: a node that does not share that part of the filesystem.
   * That needs a private mount namespace (`unshare -m`); `hidden` says whether it worked.
   */
  static async start(hide: string[] = []): Promise<SlurmCluster> {
    const dir = await scratchDir({ prefix: "facegan-slurm-" });
    // munged refuses a socket dir that others cannot traverse; makeTempDir makes 0700.
    await Deno.chmod(dir, 0o755);
    for (const sub of ["munge", "spool", "state"]) await Deno.mkdir(join(dir, sub), { mode: 0o755 });
    const key = join(dir, "munge.key");
    await run("mungekey", ["-c", "-f", "-k", key]);
    await Deno.chmod(key, 0o600);
    const socket = join(dir, "munge", "munge.socket");
    const conf = join(dir, "slurm.conf");
    await Deno.writeTextFile(conf, slurmConf(dir, socket, freePort(), freePort()));
    const env = { SLURM_CONF: conf };
    const daemons: Deno.ChildProcess[] = [];
    const hidden = hide.length > 0 && await canHide();
    const cluster = new SlurmCluster(dir, env, daemons, hidden);
    try {
      daemons.push(spawn("munged", [
        "-F",
        `--key-file=${key}`,
        `--socket=${socket}`,
        `--pid-file=${join(dir, "munged.pid")}`,
        `--log-file=${join(dir, "munged.log")}`,
        `--seed-file=${join(dir, "munge.seed")}`,
      ]));
      await waitFor(() => exists(socket), 30_000, "munged's socket");
      daemons.push(spawn("slurmctld", ["-D", "-f", conf]));
      const slurmd = [which("slurmd")!, "-D", "-N", "node1", "-f", conf];
      if (hidden) {
        const mounts = hide.map((path) => `mount -t tmpfs tmpfs '${path}'`).join(" && ");
        daemons.push(spawn("unshare", ["-m", "sh", "-c", `${mounts} && exec "$@"`, "sh", ...slurmd]));
      } else {
        daemons.push(spawn(slurmd[0], slurmd.slice(1)));
      }
      const idle = async () => (await run("sinfo", ["-h", "-o", "%T"], env).catch(() => "")).trim() === "idle";
      await waitFor(idle, 30_000, "the Slurm test node to be idle");
      return cluster;
    } catch (error) {
      await cluster.stop();
      const logs = await Promise.all(
        ["munged.log", "slurmctld.log", "slurmd.log"].map((name) => Deno.readTextFile(join(dir, name)).catch(() => "")),
      );
      throw new Error(`${(error as Error).message}\n${logs.join("\n")}`);
    }
  }

  /** Ids of the jobs Slurm still lists as pending, running or completing. */
  async queue(): Promise<string[]> {
    return (await run("squeue", ["-h", "-o", "%i"], this.env)).split("\n").filter(Boolean);
  }

  /** Stop slurmctld (by its pid): client commands then fail as they do when the controller is down. */
  async stopController(): Promise<void> {
    await terminate(this.daemons[CONTROLLER]);
  }

  /** Start slurmctld again (it recovers its state); resolves when it answers. */
  async startController(): Promise<void> {
    this.daemons[CONTROLLER] = spawn("slurmctld", ["-D", "-f", this.env.SLURM_CONF]);
    await waitFor(() => run("scontrol", ["ping"], this.env).then(() => true, () => false), 30_000, "slurmctld");
  }

  /** Cancel what is left, then stop slurmd, slurmctld and munged, each by its pid. */
  async stop(): Promise<void> {
    await run("scancel", ["--user=root"], this.env).catch(() => "");
    for (const daemon of [...this.daemons].reverse()) await terminate(daemon);
  }
}

/** The daemons' order: munged, slurmctld, slurmd. */
const CONTROLLER = 1;

async function terminate(daemon: Deno.ChildProcess): Promise<void> {
  try {
    daemon.kill("SIGTERM");
  } catch { /* already gone */ }
  const timer = setTimeout(() => {
    try {
      daemon.kill("SIGKILL");
    } catch { /* gone */ }
  }, 5000);
  await daemon.status;
  clearTimeout(timer);
}

function slurmConf(dir: string, socket: string, ctldPort: number, slurmdPort: number): string {
  return `ClusterName=facegantest
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort=${ctldPort}
SlurmdPort=${slurmdPort}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=${socket}
CredType=cred/munge
StateSaveLocation=${join(dir, "state")}
SlurmdSpoolDir=${join(dir, "spool")}
SlurmctldPidFile=${join(dir, "slurmctld.pid")}
SlurmdPidFile=${join(dir, "slurmd.pid")}
SlurmctldLogFile=${join(dir, "slurmctld.log")}
SlurmdLogFile=${join(dir, "slurmd.log")}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0
ReturnToService=2
KillWait=5
# More CPUs than the machine has (config_overrides), so that sleeping test jobs never queue.
SlurmdParameters=config_overrides
NodeName=node1 NodeAddr=127.0.0.1 CPUs=8 State=UNKNOWN
PartitionName=debug Nodes=node1 Default=YES MaxTime=INFINITE State=UP
`;
}

/** Whether this process may make a private mount namespace and mount a tmpfs in it. */
async function canHide(): Promise<boolean> {
  const probe = await scratchDir();
  try {
    const { code } = await new Deno.Command("unshare", {
      args: ["-m", "mount", "-t", "tmpfs", "tmpfs", probe],
      stdout: "null",
      stderr: "null",
    }).output();
    return code === 0;
  } catch {
    return false;
  } finally {
    await Deno.remove(probe);
  }
}

/** A daemon in the foreground; it logs to its own log file in the cluster dir. */
function spawn(command: string, args: string[]): Deno.ChildProcess {
  return new Deno.Command(which(command) ?? command, { args, stdin: "null", stdout: "null", stderr: "null" }).spawn();
}

async function run(command: string, args: string[], env: Record<string, string> = {}): Promise<string> {
  const output = await new Deno.Command(which(command) ?? command, { args, env, stdout: "piped", stderr: "piped" })
    .output();
  if (!output.success) throw new Error(`${command} ${args.join(" ")}: ${new TextDecoder().decode(output.stderr)}`);
  return new TextDecoder().decode(output.stdout);
}
