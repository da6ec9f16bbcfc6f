package checkpoints

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// JSONError adds the byte offset to syntax errors, which encoding/json leaves out
// of the message.
func JSONError(err error) error {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Errorf("%w (at byte %d)", err, se.Offset)
	}
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return errors.New("unexpected end of JSON input")
	}
	return err
}
