// Package datasets turns dataset files into token sequences with label masks,
// and those into rows of batches.
//
// Sources are JSONL, JSON (an array of records) and Parquet files, and text
// documents (a directory or glob of files); several are mixed with weights.
// Records are pre-tokenized ({input_ids, labels}), text ({text}), instruction
// (Alpaca: {instruction, input, output}) or chat (OpenAI {messages: [{role,
// content}]} or ShareGPT {conversations: [{from, value}]}), field names
// mappable. Text is tokenized with the model's tokenizer and its rules for BOS
// and EOS; instruction and chat records are rendered with its chat template,
// and only the responses are trained by default.
//
// Files are never held in memory: Open indexes them (8 bytes per JSONL or JSON
// record, row groups for Parquet) and runs one counting pass that tokenizes
// every record in parallel and keeps its length (4 bytes); a Loader then
// reads and tokenizes the examples a row needs, in an order drawn from the
// seed and the epoch, and its Cursor resumes mid-epoch exactly.
package datasets
