/**
 * The one tfjs entry point of models/. tfjs-core's Node bundle ships neither the gradient
 * functions nor the chained-op methods (x.add(y)); its ESM files that register them cannot be
 * loaded by Deno (extension-less imports). The `@tensorflow/tfjs` union bundle of the same
 * version registers both on the shared tfjs-core instance, so it is imported for that side effect.
 */
import "@tensorflow/tfjs";
export * from "@tensorflow/tfjs-core";
import type {} from "@tensorflow/tfjs-core/dist/public/chained_ops/register_all_chained_ops.d.ts";
