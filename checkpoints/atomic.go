package checkpoints

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// WriteFileAtomic replaces path with what write produces, or leaves it
// untouched: the data goes to a temporary file in the same directory (so the
// rename cannot cross filesystems), which is fsynced, renamed over path, and
// the directory fsynced so the rename itself survives a crash. On any error,
// or a panic in write, the temporary file is removed. The new file keeps the
// permissions of the file it replaces, or gets 0644.
func WriteFileAtomic(path string, write func(w io.Writer) error) error {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	if base == "" {
		return fmt.Errorf("write %s: not a file name", path)
	}
	perm := fs.FileMode(0o644)
	if st, err := os.Stat(path); err == nil {
		if st.IsDir() {
			return fmt.Errorf("write %s: is a directory", path)
		}
		perm = st.Mode().Perm()
	}
	f, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	done := false
	defer func() {
		if !done {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err := write(f); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Chmod(perm); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("write %s: fsync: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	done = true
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("write %s: fsync directory: %w", path, err)
	}
	return nil
}

// syncDir makes a rename in dir durable. Filesystems that cannot fsync a
// directory (EINVAL) give no stronger guarantee to ask for, so that is not an
// error.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, syscall.EINVAL) {
		return err
	}
	return nil
}

// WriteDirAtomic builds a directory under a temporary name next to dir, syncs
// it, and puts it in place of dir, so that a crash leaves either the old
// directory or the new one, never half of one. An existing dir is replaced
// only when it holds nothing the new one does not (an earlier output of the
// same kind): a directory with other files in it is the user's, and is left
// alone with an error.
func WriteDirAtomic(dir string, fill func(tmp string) error) error {
	parent := filepath.Dir(dir)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(parent, "."+filepath.Base(dir)+".tmp-")
	if err != nil {
		return err
	}
	err = fill(tmp)
	if err == nil {
		err = os.Chmod(tmp, 0o755) // MkdirTemp makes it private
	}
	if err == nil {
		err = syncDir(tmp)
	}
	if err == nil {
		err = checkReplaceable(dir, tmp)
	}
	if err == nil {
		err = replaceDir(tmp, dir)
	}
	if err != nil {
		os.RemoveAll(tmp)
		return err
	}
	return syncDir(parent)
}

// checkReplaceable refuses to replace an existing dir that holds an entry
// the new directory new does not.
func checkReplaceable(dir, new string) error {
	entries, err := os.ReadDir(dir)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range entries {
		if _, err := os.Lstat(filepath.Join(new, e.Name())); err != nil {
			return fmt.Errorf("%s already exists and holds %s, which tune would not write there: choose another output or remove it", dir, e.Name())
		}
	}
	return nil
}

// replaceDirTwoSteps moves an existing dir aside, then tmp in its place; a
// crash between the two leaves the old one at tmp+".old".
func replaceDirTwoSteps(tmp, dir string) error {
	old := ""
	if _, err := os.Stat(dir); err == nil {
		old = tmp + ".old"
		if err := os.Rename(dir, old); err != nil {
			return err
		}
	}
	if err := os.Rename(tmp, dir); err != nil {
		if old != "" {
			os.Rename(old, dir)
		}
		return err
	}
	if old != "" {
		return os.RemoveAll(old)
	}
	return nil
}
