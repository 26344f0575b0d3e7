/**
 * Face embeddings and detection from @vladmandic/face-api, with the weights the package ships
 * (face_recognition: a 128-D descriptor; tiny_face_detector), loaded from its own files: no
 * network. face-api's Node/wasm build runs on the project's tfjs instance and backend.
 */
import { fileURLToPath } from "node:url";
import * as tf from "../models/tf.ts";
import { nativeKernelsInstalled } from "../models/backends/native.ts";

const ENTRY = "@vladmandic/face-api/dist/face-api.node-wasm.js";
/**
 * Images per face-api call: 8, or 4 for a set that 4 divides and 8 does not, so that every call
 * has one batch size. The first call at a batch size pays for fresh memory in proportion to the
 * batch (about 50 ms an image on native): 8 embeds 128 faces in 1.6 s where 32 took 2.7 s; 20
 * faces as 5 x 4 take 0.5 s less than as 8 + 8 + 4. The descriptors are the same at any size.
 */
function batchSize(count: number): number {
  return count % 8 !== 0 && count % 4 === 0 ? 4 : 8;
}

const DETECTOR_FACE = 96;
const DETECTOR_CANVAS = 160;
const DETECTOR_SCORE = 0.5;
/**
 * Images per pass of the face detector (see detectionRate): 16 on native; one on wasm, whose
 * kernels took 1.4x longer on 16 at once.
 */
const detectorBatch = () => nativeKernelsInstalled() ? 16 : 1;

// deno-lint-ignore no-explicit-any
type FaceApi = any;

export class FaceFeatures {
  private constructor(private readonly api: FaceApi) {}

  static async load(): Promise<FaceFeatures> {
    const module = await import(ENTRY);
    const api = module.default ?? module;
    const weights = fileURLToPath(new URL("../model", import.meta.resolve(ENTRY)));
    await api.nets.faceRecognitionNet.loadFromDisk(weights);
    await api.nets.tinyFaceDetector.loadFromDisk(weights);
    return new FaceFeatures(api);
  }

  private toTensors(images: Uint8Array[], size: number): tf.Tensor3D[] {
    return images.map((pixels) => tf.tensor3d(Float32Array.from(pixels), [size, size, 3]));
  }

  /** One 128-D descriptor per image (face-api resizes each to 150x150 itself). */
  async embed(images: Uint8Array[], size: number, progress: (done: number) => void): Promise<Float32Array[]> {
    const out: Float32Array[] = [];
    const batch = batchSize(images.length);
    for (let start = 0; start < images.length; start += batch) {
      const tensors = this.toTensors(images.slice(start, start + batch), size);
      const result = await this.api.computeFaceDescriptor(tensors);
      const descriptors: Float32Array[] = Array.isArray(result) ? result : [result];
      out.push(...descriptors.map((d) => Float32Array.from(d)));
      tf.dispose(tensors);
      progress(out.length);
    }
    return out;
  }

  /**
   * Share of images in which the tiny face detector finds a face (score >= 0.5). A tight 32 px
   * crop is almost never detected as it is (3 of 100 real held-out faces, measured), so each
   * image is resized to 96 px and centred on a 160 px grey canvas first (88 of 100).
   *
   * What detectSingleFace does for each image, several images per pass of the net on native: its
   * output for each image is the same to the bit as one image at a time (checked), and
   * an image has a face when the detector's boxes above the threshold are not none (face-api's
   * non-maximum suppression keeps the best of them). 1.7x faster: the detector's layers are small,
   * and per image each of its ~40 kernels cost more to start than to run.
   */
  async detectionRate(images: Uint8Array[], size: number): Promise<number> {
    const detector = this.api.nets.tinyFaceDetector;
    const border = (DETECTOR_CANVAS - DETECTOR_FACE) / 2;
    const frame = (pixels: Uint8Array) =>
      tf.tidy(() => {
        const image = tf.tensor4d(Float32Array.from(pixels), [1, size, size, 3]);
        const resized = tf.image.resizeBilinear(image, [DETECTOR_FACE, DETECTOR_FACE]);
        return tf.pad(resized, [[0, 0], [border, border], [border, border], [0, 0]], 128).squeeze([0]) as tf.Tensor3D;
      });
    const batch = detectorBatch();
    let found = 0;
    for (let start = 0; start < images.length; start += batch) {
      const framed = images.slice(start, start + batch).map(frame);
      const input = await this.api.toNetInput(framed);
      const output: tf.Tensor4D = await detector.forwardInput(input, DETECTOR_CANVAS);
      for (let i = 0; i < framed.length; i++) {
        const one = tf.slice(output, [i, 0, 0, 0], [1, -1, -1, -1]);
        const boxes = await detector.extractBoxes(one, input.getReshapedInputDimensions(i), DETECTOR_SCORE);
        if (boxes.length > 0) found++;
        one.dispose();
      }
      output.dispose();
      tf.dispose(framed);
    }
    return found / images.length;
  }
}
