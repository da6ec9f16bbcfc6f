package jinja

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// This file is tune's addition to the engine: limits that make a hostile
// template (a chat_template comes with any model downloaded from a hub) end
// with an error instead of exhausting memory, looping for ever or overflowing
// the stack. Hugging Face renders templates in Jinja2's sandbox for the same
// reason; the limits here are tighter and also bound time and output.

// Limits bound one render. A zero field takes its default.
type Limits struct {
	// Steps counts statements executed, expressions evaluated and loop
	// iterations; it bounds time.
	Steps int64
	// Depth bounds the nesting of statements, expressions and macro calls
	// (so the Go stack), as parsing bounds the nesting of the source.
	Depth int
	// Output bounds the bytes rendered (and any one captured block).
	Output int
	// Alloc bounds the bytes of the new strings, lists and dicts that
	// expressions make over the whole render.
	Alloc int64
	// Time bounds the render's wall-clock time, checked every few thousand
	// steps: a backstop for steps that each scan long strings.
	Time time.Duration
}

// DefaultLimits are generous for any real chat template: the longest ones
// (tool-calling templates) take some thousands of steps per message.
var DefaultLimits = Limits{Steps: 20_000_000, Depth: 256, Output: 64 << 20, Alloc: 512 << 20, Time: 30 * time.Second}

// Bounds that hold for every render, as builtins have no budget at hand.
const (
	// maxValueBytes bounds one string a single operation makes.
	maxValueBytes = 32 << 20
	// maxItems bounds the items of one list a single operation makes.
	maxItems = 1 << 20
	// maxValueDepth bounds the nesting of lists and dicts that printing,
	// comparing or encoding walks (a list can be appended to itself).
	maxValueDepth = 512
	// maxParseDepth bounds the nesting of the template source.
	maxParseDepth = 256
	// valueSize is what one list slot or dict entry costs, about.
	valueSize = 32
)

// ErrLimit is wrapped by every error that a limit caused.
var ErrLimit = errors.New("template exceeds a limit")

// limitError is panicked where a limit is hit deep inside the engine (in a
// builtin, or while printing a value) and turned into an error by render.
type limitError struct{ msg string }

func (l limitError) Error() string { return fmt.Sprintf("%v: %s", ErrLimit, l.msg) }
func (l limitError) Unwrap() error { return ErrLimit }

func exceeded(format string, a ...any) {
	panic(limitError{fmt.Sprintf(format, a...)})
}

// checkLen refuses a string of n bytes (n < 0: an overflowed size).
func checkLen(n int) {
	if n < 0 || n > maxValueBytes {
		exceeded("a string of more than %d MiB", maxValueBytes>>20)
	}
}

// checkItems refuses a list of n items.
func checkItems(n int) {
	if n < 0 || n > maxItems {
		exceeded("a list of more than %d items", maxItems)
	}
}

// mulLen is a×b, or -1 when it overflows.
func mulLen(a, b int) int {
	if a == 0 || b == 0 {
		return 0
	}
	if a < 0 || b < 0 || a > (1<<62)/b {
		return -1
	}
	return a * b
}

// budget is one render's account, shared by the evaluators of its macros
// and captured blocks.
type budget struct {
	lim      Limits
	steps    int64
	alloc    int64
	depth    int
	deadline time.Time
}

func newBudget(lim Limits) *budget {
	d := DefaultLimits
	if lim.Steps > 0 {
		d.Steps = lim.Steps
	}
	if lim.Depth > 0 {
		d.Depth = lim.Depth
	}
	if lim.Output > 0 {
		d.Output = lim.Output
	}
	if lim.Alloc > 0 {
		d.Alloc = lim.Alloc
	}
	if lim.Time > 0 {
		d.Time = lim.Time
	}
	return &budget{lim: d, deadline: time.Now().Add(d.Time)}
}

func (b *budget) step() {
	if b.steps++; b.steps > b.lim.Steps {
		exceeded("more than %d steps (a loop that does not end?)", b.lim.Steps)
	}
	if b.steps%4096 == 0 && time.Now().After(b.deadline) {
		exceeded("longer than %v", b.lim.Time)
	}
}

func (b *budget) enter() {
	if b.depth++; b.depth > b.lim.Depth {
		exceeded("nesting deeper than %d (unbounded recursion?)", b.lim.Depth)
	}
}

func (b *budget) leave() { b.depth-- }

// charge counts n bytes of new values.
func (b *budget) charge(n int64) {
	if b.alloc += n; b.alloc > b.lim.Alloc {
		exceeded("more than %d MiB of values made", b.lim.Alloc>>20)
	}
}

// chargeValue counts a value an operation made: a string's bytes, a
// list's or dict's slots (their items were counted when they were made).
func (b *budget) chargeValue(v Value) {
	switch v.kind {
	case KindString:
		b.charge(int64(len(v.AsString())))
	case KindList:
		b.charge(int64(valueSize * v.AsList().Len()))
	case KindDict:
		b.charge(int64(2 * valueSize * v.AsDict().Len()))
	}
}

// output checks a builder after a write.
func (b *budget) output(sb *strings.Builder) {
	if sb.Len() > b.lim.Output {
		exceeded("more than %d MiB of output", b.lim.Output>>20)
	}
}

// cappedBuilder is a strings.Builder that refuses to grow past maxValueBytes,
// for strings whose size depends on what the template built (printing a
// list that holds the same long string a million times).
type cappedBuilder struct{ strings.Builder }

func (c *cappedBuilder) WriteString(s string) (int, error) {
	checkLen(c.Len() + len(s))
	return c.Builder.WriteString(s)
}

func (c *cappedBuilder) Write(p []byte) (int, error) {
	checkLen(c.Len() + len(p))
	return c.Builder.Write(p)
}

func (c *cappedBuilder) WriteByte(x byte) error {
	checkLen(c.Len() + 1)
	return c.Builder.WriteByte(x)
}

// cappedReplace is strings.Replace with the result's size checked first.
func cappedReplace(s, old, new string, n int) string {
	count := strings.Count(s, old)
	if n >= 0 && n < count {
		count = n
	}
	checkLen(len(s) + mulLen(count, len(new)))
	return strings.Replace(s, old, new, n)
}

// cappedRepeat is Python's str * n: empty for n <= 0, size checked.
func cappedRepeat(s string, n int64) string {
	if n <= 0 || s == "" {
		return ""
	}
	if n > maxValueBytes {
		exceeded("a string of more than %d MiB", maxValueBytes>>20)
	}
	checkLen(mulLen(len(s), int(n)))
	return strings.Repeat(s, int(n))
}

// recoverLimit turns a panic inside the engine into an error: a limit's
// own, or any other (a bug in a builtin must not end the program).
func recoverLimit(err *error) {
	switch r := recover().(type) {
	case nil:
	case limitError:
		*err = r
	case error:
		*err = fmt.Errorf("template failed: %w", r)
	default:
		*err = fmt.Errorf("template failed: %v", r)
	}
}
