/**
 * export: the trained generator as a standard TensorFlow.js model — a GraphModel (`model.json` +
 * `group1-shard*.bin`, data/tfjs_model_file.ts) built by models/generator_graph.ts, with z size,
 * image size, the generator's options and the training params in its `userDefinedMetadata` — and
 * faces.html, a self-contained page that generates faces with it in the browser.
 * A GraphModel, not a LayersModel: Keras layers have no batch norm over running statistics as we
 * keep them, no SAGAN attention and no folded spectral norm, while a graph of TF ops expresses
 * every generator variant exactly.
 */
import { join } from "node:path";
import * as tf from "../models/tf.ts";
import type { StageContext } from "../pipeline/core/types.ts";
import { generatorGraph } from "../models/generator_graph.ts";
import { readGenerator } from "../data/generator_file.ts";
import { readTrainingSummary } from "../data/training_log.ts";
import { tfjsModel, writeTfjsModel } from "../data/tfjs_model_file.ts";
import { facesPage } from "../data/faces_page.ts";

export async function run(ctx: StageContext): Promise<void> {
  tf.env().set("IS_TEST", true); // silences tfjs' "install tfjs-node" banner
  await tf.setBackend("cpu"); // exact: the folded weights are computed once, as the pipeline's cpu forward does
  ctx.progress({ note: "building the generator's graph" });
  const generator = await readGenerator(ctx.inputs.train);
  const training = await readTrainingSummary(ctx.inputs.train);
  const graph = generatorGraph(generator);
  const model = await tfjsModel(graph, {
    z_size: generator.config.zSize,
    image_size: generator.config.imageSize,
    input: graph.input,
    output: graph.output,
    generator: generator.config,
    params: training.params,
    train_output: ctx.inputHashes.train,
  });
  ctx.progress({ note: "writing the model and faces.html" });
  await writeTfjsModel(ctx.outDir, model);
  const bundle = await Deno.readTextFile(join(ctx.root, "node_modules", "@tensorflow", "tfjs", "dist", "tf.min.js"));
  await Deno.writeTextFile(join(ctx.outDir, "faces.html"), facesPage(model, bundle));
  ctx.log(
    `wrote model.json, ${
      model.json.weightsManifest[0].paths.length
    } weight shard(s) (${model.weights.length} bytes), faces.html`,
  );
}
