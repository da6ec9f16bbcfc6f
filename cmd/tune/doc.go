// Command tune fine-tunes language models with LoRA on the CPU, and exports
// what it trained for the inference servers people run. Its subcommands (run,
// eval, generate, export, merge, inspect, data, tokenize, bench, plan) parse the
// command line, call the packages that do the work and print; exit code 2
// means a bad command line, config or input.
package main
