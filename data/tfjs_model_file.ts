/**
 * The exported generator in TensorFlow.js' own GraphModel format: `model.json` (the graph as a
 * GraphDef in JSON, `weightsManifest`, `userDefinedMetadata`) and `group1-shardKofN.bin` weight
 * shards (little-endian values of every constant, back to back in manifest order, cut every 4 MiB
 * as the TF.js converter does). Any TF.js program opens it with `tf.loadGraphModel`.
 */
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { type GraphModel, loadGraphModel, type Tensor, tidy, zeros } from "@tensorflow/tfjs";
import type { GeneratorGraph } from "../models/generator_graph.ts";
import { concatBytes } from "./image_io.ts";

const SHARD_BYTES = 4 * 1024 * 1024;

/** What a `model.json` holds (the fields this project writes). */
export interface ModelJson {
  format: "graph-model";
  generatedBy: string;
  convertedBy: null;
  modelTopology: { node: unknown[]; library: Record<string, never>; versions: Record<string, never> };
  weightsManifest: { paths: string[]; weights: { name: string; shape: number[]; dtype: string }[] }[];
  userDefinedMetadata: Record<string, unknown>;
}

/** A model ready to write or inline: its model.json and all weight bytes (the shards joined). */
export interface TfjsModel {
  json: ModelJson;
  weights: Uint8Array;
}

/** The metadata the export stage records: what a reader needs to feed the model, and its origin. */
export interface FaceganMetadata {
  z_size: number;
  image_size: number;
  input: string;
  output: string;
  [other: string]: unknown;
}

export async function tfjsModel(graph: GeneratorGraph, metadata: FaceganMetadata): Promise<TfjsModel> {
  const parts: Uint8Array[] = [];
  for (const [, tensor] of graph.constants) {
    const values = await tensor.data() as Float32Array | Int32Array;
    parts.push(new Uint8Array(values.buffer, values.byteOffset, values.byteLength));
  }
  const weights = concatBytes(parts);
  const count = Math.max(1, Math.ceil(weights.length / SHARD_BYTES));
  const json: ModelJson = {
    format: "graph-model",
    generatedBy: "facegan",
    convertedBy: null,
    modelTopology: { node: graph.nodes, library: {}, versions: {} },
    weightsManifest: [{
      paths: Array.from({ length: count }, (_, i) => `group1-shard${i + 1}of${count}.bin`),
      weights: graph.constants.map(([name, tensor]) => ({ name, shape: tensor.shape, dtype: tensor.dtype })),
    }],
    userDefinedMetadata: { facegan: metadata },
  };
  return { json, weights };
}

export async function writeTfjsModel(dir: string, model: TfjsModel): Promise<void> {
  await Deno.mkdir(dir, { recursive: true });
  const paths = model.json.weightsManifest[0].paths;
  for (let i = 0; i < paths.length; i++) {
    await Deno.writeFile(join(dir, paths[i]), model.weights.subarray(i * SHARD_BYTES, (i + 1) * SHARD_BYTES));
  }
  await Deno.writeTextFile(join(dir, "model.json"), JSON.stringify(model.json));
}

/**
 * An exported model opened with TF.js' own loader, and its facegan metadata, checked against the
 * graph: a reader sizes its latents and images by the metadata, so a wrong value there (an edit,
 * `z_size: 1e9`) must fail here in one line rather than allocate gigabytes.
 */
export async function loadTfjsModel(dir: string): Promise<{ model: GraphModel; metadata: FaceganMetadata }> {
  const model = await loadGraphModel(pathToFileURL(join(dir, "model.json")).href);
  const metadata = (model.metadata as { facegan?: FaceganMetadata } | undefined)?.facegan;
  if (!metadata) throw new Error(`${dir}/model.json has no facegan metadata: it was not written by the export stage`);
  const zSize = model.inputs[0]?.shape?.[1];
  if (metadata.z_size !== zSize) {
    throw new Error(`its metadata says z_size ${JSON.stringify(metadata.z_size)}, its graph takes z of ${zSize}`);
  }
  const probe = tidy(() => (model.execute(zeros([1, zSize])) as Tensor).shape);
  if (probe.join() !== [1, metadata.image_size, metadata.image_size, 3].join()) {
    throw new Error(
      `its metadata says image_size ${JSON.stringify(metadata.image_size)}, its graph makes images of shape ` +
        `[${probe.slice(1).join(", ")}]`,
    );
  }
  return { model, metadata };
}
