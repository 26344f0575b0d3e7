/**
 * `deno task sample`: faces from an exported generator (the export stage's TF.js model; by default
 * the last run's, outputs/latest/export), as one PNG grid or one PNG per face. z comes from the
 * project's seeded generator and the model runs on tfjs' cpu backend, so a seed gives the same bytes.
 *
 *   deno task sample [--n 64] [--seed S] [--out faces.png] [--grid] [--interpolate A,B] [--model DIR]
 */
import { parseArgs } from "node:util";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import * as tf from "./models/tf.ts";
import { Rng } from "./models/rng.ts";
import { slerp } from "./models/latent.ts";
import { toUint8Images } from "./models/serialize.ts";
import { loadTfjsModel } from "./data/tfjs_model_file.ts";
import { encodePng, gridImage } from "./data/image_io.ts";
import { exists } from "./pipeline/storage/fsutil.ts";
import { EXIT_USER_ERROR, UserError } from "./pipeline/core/errors.ts";

const USAGE =
  "usage: deno task sample [--n 64] [--seed S] [--out faces.png] [--grid] [--interpolate A,B] [--model DIR]";
const ROOT = dirname(fileURLToPath(import.meta.url));

interface Options {
  n: number;
  seed: number;
  out: string;
  grid: boolean;
  /** two seeds: the faces walk from the first face of one to the first face of the other */
  interpolate: [number, number] | null;
  model: string;
}

function integer(flag: string, text: string, min: number, max: number): number {
  const value = Number(text);
  if (!/^\d+$/.test(text) || value < min || value > max) {
    throw new UserError(`--${flag} ${text}: expected a whole number from ${min} to ${max}`);
  }
  return value;
}

function parse(args: string[]): Options {
  let values;
  try {
    ({ values } = parseArgs({
      args,
      options: {
        n: { type: "string", default: "64" },
        seed: { type: "string", default: "1" },
        out: { type: "string", default: "faces.png" },
        grid: { type: "boolean", default: false },
        interpolate: { type: "string" },
        model: { type: "string", default: join(ROOT, "outputs", "latest", "export") },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (error) {
    // parseArgs' messages can span lines; the CLI's errors are one line.
    throw new UserError(`${(error as Error).message.replace(/\s*\n\s*/g, " ")}; ${USAGE}`);
  }
  const seeds = values.interpolate?.split(",");
  if (seeds && seeds.length !== 2) throw new UserError(`--interpolate ${values.interpolate}: expected two seeds, A,B`);
  if (!values.out.endsWith(".png")) throw new UserError(`--out ${values.out}: expected a file name ending in .png`);
  return {
    n: integer("n", values.n, seeds ? 2 : 1, 4096),
    seed: integer("seed", values.seed, 0, 2 ** 32 - 1),
    out: values.out,
    grid: values.grid,
    interpolate: seeds
      ? [integer("interpolate", seeds[0], 0, 2 ** 32 - 1), integer("interpolate", seeds[1], 0, 2 ** 32 - 1)]
      : null,
    model: values.model,
  };
}

/** The latents to draw: n faces of the seed, or n steps from face A to face B. */
function latentsFor(options: Options, zSize: number): Float32Array {
  if (!options.interpolate) return new Rng(options.seed).normals(options.n * zSize);
  const [a, b] = options.interpolate.map((seed) => new Rng(seed).normals(zSize));
  const z = new Float32Array(options.n * zSize);
  for (let i = 0; i < options.n; i++) z.set(slerp(a, b, i / (options.n - 1)), i * zSize);
  return z;
}

async function sample(options: Options): Promise<string[]> {
  if (!(await exists(join(options.model, "model.json")))) {
    throw new UserError(
      `${options.model}/model.json not found: run \`deno task pipeline\` (its export stage) or pass --model DIR`,
    );
  }
  tf.env().set("IS_TEST", true); // silences tfjs' "install tfjs-node" banner
  await tf.setBackend("cpu");
  const { model, metadata } = await loadTfjsModel(options.model).catch((error) => {
    throw new UserError(`${options.model}: not a facegan TF.js model (${error.message})`);
  });
  const { z_size: zSize, image_size: size } = metadata;
  const z = tf.tensor2d(latentsFor(options, zSize), [options.n, zSize]);
  const images = model.execute(z) as tf.Tensor4D;
  const pixels = await toUint8Images(images);
  tf.dispose([z, images]);
  await Deno.mkdir(dirname(resolve(options.out)), { recursive: true });
  if (options.grid) {
    const columns = Math.ceil(Math.sqrt(options.n));
    await Deno.writeFile(options.out, await encodePng(gridImage(pixels, options.n, size, columns)));
    return [options.out];
  }
  const digits = String(options.n - 1).length;
  const written: string[] = [];
  for (let i = 0; i < options.n; i++) {
    const path = options.out.replace(/\.png$/, `-${String(i).padStart(digits, "0")}.png`);
    const face = pixels.subarray(i * size * size * 3, (i + 1) * size * size * 3);
    // One face: a 1-column grid, less its 1-pixel gutter.
    await Deno.writeFile(path, await encodePng(gridImage(face, 1, size, 1).crop(1, 1, size, size)));
    written.push(path);
  }
  return written;
}

try {
  const written = await sample(parse(Deno.args));
  console.log(written.length === 1 ? `wrote ${written[0]}` : `wrote ${written.length} faces: ${written[0]} ...`);
} catch (error) {
  if (!(error instanceof UserError)) throw error;
  console.error(`error: ${error.message}`);
  Deno.exit(EXIT_USER_ERROR);
}
