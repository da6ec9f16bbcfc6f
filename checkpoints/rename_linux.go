package checkpoints

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// replaceDir puts directory tmp at dir. An existing dir is swapped with tmp
// in one step (renameat2 RENAME_EXCHANGE), so no moment has dir missing;
// the old contents, now at tmp, are then removed.
func replaceDir(tmp, dir string) error {
	err := unix.Renameat2(unix.AT_FDCWD, tmp, unix.AT_FDCWD, dir, unix.RENAME_EXCHANGE)
	switch {
	case err == nil:
		return os.RemoveAll(tmp)
	case errors.Is(err, unix.ENOENT):
		return os.Rename(tmp, dir) // nothing to swap with
	case errors.Is(err, unix.EINVAL), errors.Is(err, unix.ENOSYS):
		return replaceDirTwoSteps(tmp, dir) // a file system without exchange
	}
	return err
}
