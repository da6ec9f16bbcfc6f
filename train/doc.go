// Package train runs LoRA fine-tuning from a configuration: it opens the base
// model (model), the data (datasets, through the config's mapping in data.go)
// and the adapter (lora), then loops Gorgonia's forward and backward passes
// with AdamW on the adapter's weights only, under a learning-rate schedule,
// with gradient accumulation and clipping. Around the loop it evaluates on
// held-out data, writes metrics and a loss plot, saves resumable step
// checkpoints (adapter, optimizer moments, RNG and data cursor), and at the
// end the PEFT adapter and the exports the config asks for. It parses no file
// format itself: checkpoints and tokenizer do.
package train
