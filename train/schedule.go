package train

import (
	"fmt"
	"math"
)

// Schedule gives the learning rate of each update, as the Hugging Face
// get_{constant,linear,cosine}_schedule_with_warmup functions do: a linear
// warmup from 0 over Warmup updates, then constant, linear decay to 0, or a
// half cosine to 0 at Total.
type Schedule struct {
	Kind          string // constant, linear or cosine
	Peak          float64
	Warmup, Total int
}

// WarmupSteps resolves warmup given as steps or as a ratio of the total
// (steps win when both are set, as in Hugging Face's Trainer).
func WarmupSteps(steps int, ratio float64, total int) int {
	if steps > 0 {
		return steps
	}
	return int(math.Ceil(ratio * float64(total)))
}

// LR is the learning rate of update number step (0-based).
func (s Schedule) LR(step int) float64 {
	if step < s.Warmup {
		return s.Peak * float64(step) / float64(max(1, s.Warmup))
	}
	progress := float64(step-s.Warmup) / float64(max(1, s.Total-s.Warmup))
	switch s.Kind {
	case "linear":
		return s.Peak * max(0, 1-progress)
	case "cosine":
		return s.Peak * max(0, 0.5*(1+math.Cos(math.Pi*progress)))
	}
	return s.Peak
}

// Check reports an unknown kind.
func (s Schedule) Check() error {
	switch s.Kind {
	case "constant", "linear", "cosine":
		return nil
	}
	return fmt.Errorf("schedule %q: expected constant, linear or cosine", s.Kind)
}
