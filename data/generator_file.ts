/**
 * The trained generator on disk: `generator/model.json` (architecture and tensor table) and
 * `generator/weights.bin` (float32 little-endian). Written by train, read by evaluate and render.
 */
import { join } from "node:path";
import type { DcganConfig } from "../models/dcgan.ts";
import { Generator } from "../models/dcgan.ts";
import { Rng } from "../models/rng.ts";
import { assignTensors, serializeTensors, type TensorEntry } from "../models/serialize.ts";

interface GeneratorFile {
  format: "facegan-generator-1";
  config: DcganConfig;
  tensors: TensorEntry[];
}

export async function writeGenerator(dir: string, generator: Generator): Promise<void> {
  await Deno.mkdir(join(dir, "generator"), { recursive: true });
  const { entries, bytes } = await serializeTensors(generator.store.entries());
  const file: GeneratorFile = { format: "facegan-generator-1", config: generator.config, tensors: entries };
  await Deno.writeFile(join(dir, "generator", "weights.bin"), bytes);
  await Deno.writeTextFile(join(dir, "generator", "model.json"), JSON.stringify(file, null, 1));
}

/** Rebuild the generator a train stage wrote (the tfjs backend must already be set). */
export async function readGenerator(trainDir: string): Promise<Generator> {
  const file: GeneratorFile = JSON.parse(await Deno.readTextFile(join(trainDir, "generator", "model.json")));
  const generator = new Generator(file.config, new Rng(0));
  generator.build();
  assignTensors(
    generator.store.entries(),
    file.tensors,
    await Deno.readFile(join(trainDir, "generator", "weights.bin")),
  );
  return generator;
}
