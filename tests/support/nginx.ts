/**
 * A real nginx serving Bazel's HTTP cache layout with its WebDAV module, on a free 127.0.0.1
 * port in a temp dir, stopped by pid: the remote cache of the tests. `/slow/` serves the same
 * files at 16 KiB/s, to cut a download short.
 */
import { join } from "node:path";
import { scratchDir } from "./helpers.ts";

export interface Nginx {
  /** http://127.0.0.1:PORT */
  url: string;
  /** where the uploaded files lie: `ac/<key>`, `cas/<sha256>` */
  root: string;
  stop(): Promise<void>;
}

const NGINX = ["/usr/sbin/nginx", "/usr/bin/nginx"].find((path) => {
  try {
    return Deno.statSync(path).isFile;
  } catch {
    return false;
  }
});

/** Why nginx cannot serve the tests here, or null. */
export function nginxMissing(): string | null {
  if (!NGINX) return "no nginx (apt-get install nginx)";
  const version = new Deno.Command(NGINX, { args: ["-V"], stderr: "piped" }).outputSync();
  if (!new TextDecoder().decode(version.stderr).includes("http_dav_module")) return "nginx lacks its WebDAV module";
  return null;
}

/**
 * Start nginx; with `authorization`, every request must carry one of those exact Authorization
 * header values (else 401).
 */
export async function startNginx(authorization: string[] = []): Promise<Nginx> {
  const dir = await scratchDir({ prefix: "facegan-nginx-" });
  const root = join(dir, "root");
  await Deno.mkdir(root);
  const port = freePort();
  const check = authorization.length
    ? `if ($http_authorization !~ "^(${authorization.map(escapeRegex).join("|")})$") { return 401; }`
    : "";
  const conf = join(dir, "nginx.conf");
  await Deno.writeTextFile(
    conf,
    `daemon off;
${Deno.uid() === 0 ? "user root;" : ""}
pid ${dir}/nginx.pid;
error_log stderr;
events { worker_connections 64; }
http {
  access_log off;
  log_not_found off;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  server {
    listen 127.0.0.1:${port};
    client_max_body_size 0;
    ${check}
    location ~ "^/(ac|cas)/[0-9a-f]{64}$" {
      root ${root};
      dav_methods PUT DELETE;
      create_full_put_path on;
    }
    location /slow/ {
      alias ${root}/;
      limit_rate 16k;
    }
  }
}
`,
  );
  const child = new Deno.Command(NGINX!, {
    args: ["-e", "stderr", "-c", conf, "-p", `${dir}/`],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  // Keep reading nginx's log: a full pipe would stall it.
  let log = "";
  const drained = (async () => {
    for await (const chunk of child.stderr.pipeThrough(new TextDecoderStream())) log = (log + chunk).slice(-4000);
  })();
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 10_000;
  while (true) {
    try {
      await (await fetch(`${url}/cas/${"0".repeat(64)}`)).body?.cancel();
      break;
    } catch {
      if (Date.now() > deadline) {
        child.kill("SIGKILL");
        await drained;
        throw new Error(`nginx did not start: ${log}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
  return {
    url,
    root,
    stop: async () => {
      child.kill("SIGTERM");
      await child.status;
      await drained;
      await Deno.remove(dir, { recursive: true });
    },
  };
}

function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}

function escapeRegex(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}
