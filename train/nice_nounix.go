//go:build !unix

package train

import "errors"

// setNice: this system has no nice values.
func setNice(n int) error {
	if n == 0 {
		return nil
	}
	return errors.New("not supported on this system")
}
