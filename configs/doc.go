// Package configs is the run configuration of `tune run CONFIG [key.path=value ...]`:
// its schema, its defaults, loading (viper: YAML file, TUNE_ environment variables,
// torchtune-style command-line overrides) and validation with field paths. The
// ready-made YAML configs users copy live next to this file.
//
// Precedence, lowest to highest: defaults, the YAML file, environment variables
// (TUNE_ + the upper-cased path with dots as underscores, e.g. TUNE_TRAIN_LR), and
// the overrides in the order given (the last one wins).
//
// Values: the YAML file is typed strictly (lora.r: "8" is an error, not 8); a null
// value means "use the default". Every value given is checked, even one that a later
// source overrides. Override and environment values are parsed as YAML
// (lora.target_modules=[q_proj,k_proj], train.lr=1e-4, lora.use_rslora=true), except
// that a string field takes the text verbatim unless it starts with a quote
// (output.dir=runs/2024 is the string "runs/2024"). An empty value clears a string or
// a list. A list of names or integers may also be written as one comma-separated
// string (lora.target_modules=q_proj,v_proj).
//
// Paths: relative values of model.path, data.train, data.val, data.sources[].path,
// lora.init_from and output.dir are resolved against the current working directory,
// as torchtune does, not against the config file's directory; values starting with
// "builtin:" are kept as they are. Load does not check that the paths exist: the run does, when it starts.
package configs
