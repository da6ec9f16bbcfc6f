// Reference tokenizer for tune's Go conformance tests (tokenizer/conformance_test.go).
//
// Usage: node tokenize.mjs <tokenizer-dir> <strings.json>
//
// <tokenizer-dir> holds tokenizer.json and (optionally) tokenizer_config.json;
// <strings.json> is a JSON array of strings. Prints one JSON object to stdout:
//
//   {"results": [{"ids": [...], "ids_special": [...], "ids_special_js": [...],
//                 "decode": "...", "decode_skip": "...", "decode_plain": "..."}, ...]}
//
//   ids            encode(text, add_special_tokens=false)
//   ids_special    encode(text, add_special_tokens=true), as transformers (Python) does it
//   ids_special_js the same as transformers.js does it (differs only where noted below)
//   decode         decode(ids_special, skip_special_tokens=false)
//   decode_skip    decode(ids_special, skip_special_tokens=true)
//   decode_plain   decode(ids, skip_special_tokens=false)
//
// transformers.js ignores tokenizer_config's add_bos_token/add_eos_token, while
// transformers' LlamaTokenizerFast (and Gemma/CodeLlama) rebuild the post-processor
// from them (update_post_processor). ids_special applies that rule so the oracle
// matches Python; ids_special_js keeps the raw transformers.js answer.
import { readFileSync, existsSync } from "node:fs";
import { join } from "node:path";
import { TokenizerLoader } from "@lenml/tokenizers";

const [dir, inputPath] = process.argv.slice(2);
if (!dir || !inputPath) {
  console.error("usage: node tokenize.mjs <tokenizer-dir> <strings.json>");
  process.exit(2);
}

const tokenizerJSON = JSON.parse(readFileSync(join(dir, "tokenizer.json"), "utf8"));
const configPath = join(dir, "tokenizer_config.json");
const tokenizerConfig = existsSync(configPath)
  ? JSON.parse(readFileSync(configPath, "utf8"))
  : {};
const texts = JSON.parse(readFileSync(inputPath, "utf8"));

const tok = TokenizerLoader.fromPreTrained({ tokenizerJSON, tokenizerConfig });

function tokenContent(v) {
  if (v === null || v === undefined) return null;
  return typeof v === "object" ? v.content : v;
}

// Mirrors transformers' LlamaTokenizerFast.update_post_processor for a single sequence.
const hasFlags = "add_bos_token" in tokenizerConfig || "add_eos_token" in tokenizerConfig;
const bosID = tok.model.tokens_to_ids.get(tokenContent(tokenizerConfig.bos_token));
const eosID = tok.model.tokens_to_ids.get(tokenContent(tokenizerConfig.eos_token));
function pythonSpecial(plain) {
  const out = [];
  if (tokenizerConfig.add_bos_token && bosID !== undefined) out.push(bosID);
  out.push(...plain);
  if (tokenizerConfig.add_eos_token && eosID !== undefined) out.push(eosID);
  return out;
}

// transformers.js throws on an empty id list; transformers returns "".
function decode(ids, skip) {
  if (ids.length === 0) return "";
  return tok.decode(ids, { skip_special_tokens: skip });
}

const results = texts.map((text) => {
  const ids = tok.encode(text, { add_special_tokens: false });
  const idsSpecialJS = tok.encode(text, { add_special_tokens: true });
  const idsSpecial = hasFlags ? pythonSpecial(ids) : idsSpecialJS;
  return {
    ids,
    ids_special: idsSpecial,
    ids_special_js: idsSpecialJS,
    decode: decode(idsSpecial, false),
    decode_skip: decode(idsSpecial, true),
    decode_plain: decode(ids, false),
  };
});

process.stdout.write(JSON.stringify({ results }));
