package checkpoints

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/tune-dev/tune/internal/fixture"
)

func TestWriteFileAtomic(t *testing.T) {
	errMidway := errors.New("disk on fire")
	tests := []struct {
		name    string
		write   func(w io.Writer) error
		panics  bool
		wantErr string
	}{
		{"success", func(w io.Writer) error { _, err := io.WriteString(w, "new contents"); return err }, false, ""},
		{"fails midway", func(w io.Writer) error {
			if _, err := io.WriteString(w, "half of the new"); err != nil {
				return err
			}
			return errMidway
		}, false, "disk on fire"},
		{"panics midway", func(w io.Writer) error {
			io.WriteString(w, "partial")
			panic("boom")
		}, true, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "state.bin")
			if err := os.WriteFile(path, []byte("old contents"), 0o600); err != nil {
				t.Fatal(err)
			}
			var err error
			func() {
				defer func() {
					if r := recover(); (r != nil) != tt.panics {
						t.Errorf("recover() = %v", r)
					}
				}()
				err = WriteFileAtomic(path, tt.write)
			}()
			got, rerr := os.ReadFile(path)
			if rerr != nil {
				t.Fatal(rerr)
			}
			switch {
			case tt.panics:
				if string(got) != "old contents" {
					t.Errorf("contents = %q after a panic", got)
				}
			case tt.wantErr != "":
				fixture.WantErr(t, err, tt.wantErr)
				if !errors.Is(err, errMidway) {
					t.Errorf("error %v does not wrap the write error", err)
				}
				if !strings.Contains(err.Error(), path) {
					t.Errorf("error %v does not name the file", err)
				}
				if string(got) != "old contents" {
					t.Errorf("contents = %q after a failed write", got)
				}
			default:
				if err != nil {
					t.Fatal(err)
				}
				if string(got) != "new contents" {
					t.Errorf("contents = %q", got)
				}
			}
			if names := listDir(t, dir); !reflect.DeepEqual(names, []string{"state.bin"}) {
				t.Errorf("directory holds %v, want only state.bin", names)
			}
			if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
				t.Errorf("mode = %v, want the old file's 0600", st.Mode().Perm())
			}
		})
	}
}

func TestWriteFileAtomicNewFileAndErrors(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "new.json")
	if err := WriteFileAtomic(path, func(w io.Writer) error { _, err := w.Write([]byte("{}")); return err }); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o644 {
		t.Errorf("new file: %v %v", st, err)
	}
	ok := func(w io.Writer) error { return nil }
	fixture.WantErr(t, WriteFileAtomic(dir, ok), "is a directory")
	fixture.WantErr(t, WriteFileAtomic(filepath.Join(dir, "no", "such", "x"), ok), filepath.Join(dir, "no", "such", "x"))
	if names := listDir(t, dir); !reflect.DeepEqual(names, []string{"new.json"}) {
		t.Errorf("directory holds %v", names)
	}
}

// TestWriteDirAtomicReplacesOnlyItsOwn: an earlier output of the same kind is
// replaced whole (and readable by others); a directory holding anything else
// is left alone with an error.
func TestWriteDirAtomicReplacesOnlyItsOwn(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "out")
	write := func(content string) error {
		return WriteDirAtomic(dir, func(tmp string) error {
			return os.WriteFile(filepath.Join(tmp, "a.txt"), []byte(content), 0o644)
		})
	}
	if err := write("one"); err != nil {
		t.Fatal(err)
	}
	if err := write("two"); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "a.txt")); string(b) != "two" {
		t.Fatalf("a.txt = %q after the second write", b)
	}
	if st, _ := os.Stat(dir); st.Mode().Perm() != 0o755 {
		t.Errorf("directory mode %v, want 0755", st.Mode().Perm())
	}
	os.WriteFile(filepath.Join(dir, "thesis.txt"), []byte("mine"), 0o644)
	err := write("three")
	if err == nil || !strings.Contains(err.Error(), "thesis.txt") {
		t.Fatalf("replacing a directory with a foreign file: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "thesis.txt")); string(b) != "mine" {
		t.Fatal("the user's file is gone")
	}
	if left, _ := filepath.Glob(filepath.Join(filepath.Dir(dir), ".out.tmp-*")); len(left) != 0 {
		t.Errorf("temporary directories left: %v", left)
	}
}

// listDir returns the names in dir, to spot leftover temporary files.
func listDir(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}
