//go:build !amd64 || purego

package kernels

// Without assembly (another architecture, or the purego tag) only the
// reference kernels exist.
func availableVariants() []*kernelSet { return []*kernelSet{refKernels} }

func unavailableReason(string) string {
	return "this build has no assembly kernels (not amd64, or built with -tags purego)"
}
