// Package peft reads and writes Hugging Face PEFT LoRA adapter directories
// (adapter_config.json and adapter_model.safetensors), the interchange format
// of PEFT, vLLM, TGI and LoRAX. It knows the files and the config's fields;
// the lora package knows what the tensors mean. rank_pattern and
// alpha_pattern keep their file order (Pattern), because PEFT's first match
// wins; Config.Layout resolves a module's rank and alpha as PEFT does.
package peft
