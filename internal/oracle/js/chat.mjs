// Reference chat-template renderer for tune's Go tests (tokenizer/chat_test.go).
//
// Usage: node chat.mjs <tokenizer-dir> <conversations.json>
//
// <conversations.json> is a JSON array of {"messages": [{role, content}...],
// "add_generation_prompt": bool}. Renders tokenizer_config.json's chat_template
// with @huggingface/jinja the way transformers(.js) apply_chat_template does:
// messages, add_generation_prompt, tools/documents (null) and the special
// tokens (bos_token, eos_token, ...) in the context; raise_exception and
// strftime_now are the library's built-ins. Prints a JSON array of
// {"text": "..."} or {"error": "..."}.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { Template } from "@huggingface/jinja";

const [dir, inputPath] = process.argv.slice(2);
if (!dir || !inputPath) {
  console.error("usage: node chat.mjs <tokenizer-dir> <conversations.json>");
  process.exit(2);
}

const config = JSON.parse(readFileSync(join(dir, "tokenizer_config.json"), "utf8"));
const conversations = JSON.parse(readFileSync(inputPath, "utf8"));

let source = config.chat_template;
if (Array.isArray(source)) {
  source = source.find((t) => t.name === "default")?.template;
}
if (typeof source !== "string") {
  console.error(`no chat_template in ${dir}`);
  process.exit(1);
}
const template = new Template(source);

const special = {};
for (const key of ["bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"]) {
  const v = config[key];
  const s = v && typeof v === "object" ? v.content : v;
  if (s) special[key] = s;
}

const out = conversations.map((c) => {
  try {
    return {
      text: template.render({
        messages: c.messages,
        add_generation_prompt: c.add_generation_prompt,
        tools: null,
        documents: null,
        ...special,
      }),
    };
  } catch (e) {
    return { error: String(e && e.message ? e.message : e) };
  }
});
process.stdout.write(JSON.stringify(out));
