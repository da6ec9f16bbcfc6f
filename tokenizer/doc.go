// Package tokenizer loads a Hugging Face tokenizer.json (+ tokenizer_config.json)
// and encodes and decodes with the same ids as Hugging Face. It also renders
// chat templates, and describes what it parsed (Vocabulary) for writers of
// other formats, so that tokenizer.json is parsed in one place. A GGUF file's
// tokenizer.ggml.* metadata is read (FromGGUF) and written (GGUFMetadata)
// here too, through the same in-memory tokenizer.
//
// # What uses sugarme and what is ours
//
// Only GPT-2's byte <-> rune table (ByteLevel) comes from
// github.com/sugarme/tokenizer (pretokenizer.GenerateBytesChar); it is correct
// and there is no reason to copy it. The rest of the pipeline is ours, because
// sugarme v0.3.0 gets the ids wrong or fails on the tokenizers we need:
//   - it panics loading Llama 3 / Qwen / GPT-4 style Split regexes (lookahead
//     `\s+(?!\S)`, regexp.MustCompile); we compile them with
//     github.com/dlclark/regexp2, a backtracking engine with the same \s and
//     \p{..} classes as HF's Oniguruma. The GPT-2, cl100k/Llama 3 and Qwen
//     patterns, which dominate Encode's time, run as hand-written splitters
//     (fastsplit.go) that FuzzFastSplit checks against regexp2;
//   - it silently drops special tokens written inside text and renumbers added
//     tokens; ours follow tokenizers' AddedVocabulary (leftmost-longest match,
//     lstrip/rstrip/single_word/normalized, ids from the file);
//   - it has no BPE byte_fallback (<0xNN>) on encode, no ignore_merges, and its
//     ByteLevel pre-tokenizer ignores use_regex.
//
// Everything else (normalizers, pre-tokenizers, BPE, post-processors,
// decoders) is a direct port of the Rust `tokenizers` crate, checked id for id
// against transformers.js (internal/oracle/js) by conformance_test.go.
//
// # Supported
//
// Model: BPE (byte-level like GPT-2, Llama 3, Qwen 2/2.5/3, SmolLM2, DeepSeek V3,
// cl100k; SentencePiece-style with byte_fallback like Llama 2, Mistral, TinyLlama,
// CodeLlama, Gemma); merges as "a b" or ["a","b"]; ignore_merges; fuse_unk;
// continuing_subword_prefix / end_of_word_suffix. WordPiece, Unigram and
// WordLevel models are refused with an error.
//
// Normalizers: Sequence, NFC/NFD/NFKC/NFKD, Lowercase, Strip, StripAccents,
// Replace, Prepend, ByteLevel. Pre-tokenizers: Sequence, Split (all five
// behaviours, invert), ByteLevel, Metaspace (prepend_scheme, split), Digits,
// Punctuation, Whitespace, WhitespaceSplit, BertPreTokenizer. Post-processors:
// TemplateProcessing, ByteLevel, RobertaProcessing, BertProcessing, Sequence.
// Decoders: Sequence, ByteLevel, Replace, ByteFallback, Fuse, Strip, Metaspace,
// BPEDecoder.
//
// tokenizer_config.json: bos_token/eos_token/pad_token (string or AddedToken),
// add_bos_token/add_eos_token (when present they decide BOS/EOS, as
// transformers' LlamaTokenizerFast does), clean_up_tokenization_spaces
// (default false, as transformers >= 4.45), split_special_tokens, chat_template
// (string or named list; chat_template.jinja beside it is read too).
//
// Chat templates: ApplyChatTemplate renders chat_template with
// github.com/ardanlabs/jinja (pure Go, built for HF chat templates:
// trim_blocks/lstrip_blocks, raise_exception, strftime_now, HF-style tojson),
// checked byte for byte against @huggingface/jinja.
//
// # Known differences
//
//   - Unicode tables are Go's (15.0); characters assigned later may fall in
//     different \p{..} classes than in HF's Oniguruma.
//   - Oniguruma's (?i) also folds "ſ" to "s" and "K" (Kelvin) to "k"; regexp2 does not.
//   - Invalid UTF-8 given to Encode is replaced by U+FFFD first (HF only
//     accepts valid strings). Pair sequences, truncation, padding and offsets
//     are not implemented.
package tokenizer
