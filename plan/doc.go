// Package plan answers, before a run starts and for this machine, whether a
// config fits: it detects the machine (CPU, SIMD, memory and cgroup limit,
// GPUs, the memory of the programs already running), estimates a run's peak
// resident memory from the code that sizes its buffers (train.PlanFootprint,
// model.Graph.Memory) and its step time from a short measurement of this
// machine's kernels at the config's shapes (cached per machine), and says
// what to change when it does not fit.
package plan
