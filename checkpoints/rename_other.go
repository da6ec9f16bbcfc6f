//go:build !linux

package checkpoints

// replaceDir puts directory tmp at dir (see replaceDirTwoSteps).
func replaceDir(tmp, dir string) error { return replaceDirTwoSteps(tmp, dir) }
