// Reference boxes from face-api.js itself, for tests/test_detectors.py (run by make_reference.py).
//
// Runs @vladmandic/face-api 1.7.15 (the package verikit-faceapi converts) under Node.js on
// TensorFlow.js's pure-JavaScript CPU backend, with both face detectors and the 68-point landmark
// network, as face-api.js's own pipeline does (detectAllFaces(...).withFaceLandmarks()) on an
// image tensor. Input: a JSON list (argv[2]) of {path, width, height, rgb}, where rgb is a file of
// width x height x 3 bytes (the photo's pixels). Output on stdout: per photo and detector the boxes
// (x1, y1, x2, y2 pixels, as face-api.js returns them: not clipped) and scores, and for the SSD's
// boxes the 68 landmarks (the landmark network is the same for both detectors).
'use strict';
const fs = require('fs');
const path = require('path');
const tf = require('@tensorflow/tfjs');
const faceapi = require('@vladmandic/face-api/dist/face-api.node-wasm.js');

const SETTINGS = {
  ssd: { minConfidence: 0.3, maxResults: 100 },
  tiny_yolo: { inputSize: 416, scoreThreshold: 0.3 },
};
const round = (v, digits) => Math.round(v * 10 ** digits) / 10 ** digits;

function rows(results, withLandmarks) {
  return results.map((r) => ({
    box: [r.detection.box.left, r.detection.box.top, r.detection.box.right, r.detection.box.bottom].map((v) => round(v, 4)),
    score: round(r.detection.score, 5),
    ...(withLandmarks ? { landmarks: r.landmarks.positions.map((p) => [round(p.x, 3), round(p.y, 3)]) } : {}),
  }));
}

async function main() {
  const photos = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
  await tf.setBackend('cpu');
  await tf.ready();
  const models = path.join(path.dirname(require.resolve('@vladmandic/face-api/package.json')), 'model');
  await faceapi.nets.ssdMobilenetv1.loadFromDisk(models);
  await faceapi.nets.tinyFaceDetector.loadFromDisk(models);
  await faceapi.nets.faceLandmark68Net.loadFromDisk(models);
  const out = { faceapi: faceapi.version, tfjs: tf.version.tfjs, backend: tf.getBackend(), settings: SETTINGS, photos: [] };
  for (const photo of photos) {
    const pixels = new Int32Array(fs.readFileSync(photo.rgb));
    const image = tf.tensor3d(pixels, [photo.height, photo.width, 3], 'int32');
    const ssd = await faceapi.detectAllFaces(image, new faceapi.SsdMobilenetv1Options(SETTINGS.ssd)).withFaceLandmarks();
    const tiny = await faceapi.detectAllFaces(image, new faceapi.TinyFaceDetectorOptions(SETTINGS.tiny_yolo)).withFaceLandmarks();
    out.photos.push({ path: photo.path, width: photo.width, height: photo.height, ssd: rows(ssd, true), tiny_yolo: rows(tiny, false) });
    image.dispose();
  }
  process.stdout.write(JSON.stringify(out) + '\n');
}

main().catch((err) => { console.error(err); process.exit(1); });
