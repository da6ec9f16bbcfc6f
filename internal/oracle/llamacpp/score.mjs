// llama.cpp as a reference for tune's GGUF export tests (export/*_test.go).
//
// Usage: node score.mjs <request.json>
//
// <request.json>: {"runs": [{"model": "base.gguf", "adapters": ["lora.gguf"],
//                             "ids": [1, 2, ...], "texts": ["..."]}, ...]}
// ("adapters", "ids" and "texts" optional; each adapter is applied with scale
// 1, i.e. llama.cpp's alpha/r times 1). Prints one JSON object to stdout:
//
//   {"results": [{"n_vocab": V, "logprobs": [...], "top1": [...], "tokens": [[...], ...]}, ...]}
//
//   logprobs[t]  log p(ids[t+1] | ids[0..t]) for t = 0 .. len(ids)-2, the
//                per-position terms of the next-token loss
//   top1[t]      the most likely next id after ids[0..t], t = 0 .. len(ids)-1
//   tokens[i]    llama.cpp's tokenization of texts[i] from the GGUF vocabulary,
//                special tokens in the text recognised, no BOS/EOS added
//
// The log-probabilities are exact: every raw logit of the vocabulary is
// taken from llama.cpp (controlledEvaluate with logits: true and a greedy
// sampler, which leaves the candidates untouched) and log-softmax is
// computed here in float64, rather than using the float32 probabilities
// node-llama-cpp derives. The prebuilt CPU binaries of @node-llama-cpp/linux-x64
// are used (build: "never"); the KV cache is kept in F32 and flash attention
// off, so llama.cpp computes in float32 throughout, like tune.
import { readFileSync } from "node:fs";
import { getLlama, LlamaLogLevel } from "node-llama-cpp";

const [requestPath] = process.argv.slice(2);
if (!requestPath) {
  console.error("usage: node score.mjs <request.json>");
  process.exit(2);
}
const request = JSON.parse(readFileSync(requestPath, "utf8"));

const llama = await getLlama({ gpu: false, build: "never", logLevel: LlamaLogLevel.error });

// Runs on the same model file share one load (a large vocabulary takes
// seconds to load); adapters are applied per context.
const models = new Map();

async function score(run) {
  if (!models.has(run.model)) models.set(run.model, await llama.loadModel({ modelPath: run.model, gpuLayers: 0 }));
  const model = models.get(run.model);
  const tokens = (run.texts ?? []).map((text) => Array.from(model.tokenize(text, true)));
  const ids = run.ids ?? [];
  if (ids.length === 0) return { n_vocab: 0, logprobs: [], top1: [], tokens };
  const contextSize = Math.max(64, Math.ceil(ids.length / 64) * 64);
  const context = await model.createContext({
    contextSize,
    batchSize: contextSize,
    sequences: 1,
    flashAttention: false,
    experimentalKvCacheKeyType: "F32",
    experimentalKvCacheValueType: "F32",
    lora: run.adapters?.length ? { adapters: run.adapters.map((filePath) => ({ filePath, scale: 1 })) } : undefined,
  });
  try {
    const input = ids.map((id) => [id, { generateNext: { token: true, logits: true, options: { temperature: 0 } } }]);
    const out = await context.getSequence().controlledEvaluate(input);
    const logprobs = [];
    const top1 = [];
    let nVocab = 0;
    for (let t = 0; t < ids.length; t++) {
      const logits = out[t]?.next?.logits;
      if (!logits) throw new Error(`no logits at position ${t}`);
      if (t > 0 && logits.size !== nVocab) throw new Error(`position ${t}: ${logits.size} logits, ${nVocab} before`);
      nVocab = logits.size;
      let maxLogit = -Infinity;
      let best = -1;
      for (const [tok, l] of logits) {
        if (l > maxLogit || (l === maxLogit && tok < best)) {
          maxLogit = l;
          best = tok;
        }
      }
      top1.push(best);
      if (t + 1 < ids.length) {
        let sum = 0;
        for (const l of logits.values()) sum += Math.exp(l - maxLogit);
        const target = logits.get(ids[t + 1]);
        if (target === undefined) throw new Error(`position ${t}: no logit for id ${ids[t + 1]}`);
        logprobs.push(target - maxLogit - Math.log(sum));
      }
    }
    return { n_vocab: nVocab, logprobs, top1, tokens };
  } finally {
    await context.dispose();
  }
}

const results = [];
for (const run of request.runs) {
  results.push(await score(run));
}
for (const model of models.values()) await model.dispose();
process.stdout.write(JSON.stringify({ results }) + "\n");
await llama.dispose();
