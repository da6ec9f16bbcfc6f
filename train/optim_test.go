package train

import (
	"math"
	"testing"
)

// Values of transformers' get_*_schedule_with_warmup(peak 1, warmup 2, total 10).
func TestScheduleMatchesHuggingFace(t *testing.T) {
	cases := map[string][]float64{
		"constant": {0, 0.5, 1, 1, 1, 1, 1, 1, 1, 1},
		"linear":   {0, 0.5, 1, 0.875, 0.75, 0.625, 0.5, 0.375, 0.25, 0.125},
		"cosine":   {0, 0.5, 1, 0.9619397662556434, 0.8535533905932737, 0.6913417161825449, 0.5, 0.30865828381745514, 0.14644660940672627, 0.03806023374435663},
	}
	for kind, want := range cases {
		s := Schedule{Kind: kind, Peak: 1, Warmup: 2, Total: 10}
		for step, w := range want {
			if got := s.LR(step); math.Abs(got-w) > 1e-12 {
				t.Errorf("%s step %d: lr %.6f, want %.6f", kind, step, got, w)
			}
		}
	}
	if got := WarmupSteps(0, 0.03, 1000); got != 30 {
		t.Errorf("warmup ratio 0.03 of 1000 steps = %d, want 30", got)
	}
	if err := (Schedule{Kind: "exp"}).Check(); err == nil {
		t.Error("an unknown schedule must be refused")
	}
}

func TestClipGradNorm(t *testing.T) {
	g := [][]float32{{3, 0}, {0, 4}} // norm 5
	if n := ClipGradNorm(g, 10); n != 5 || g[0][0] != 3 {
		t.Fatalf("norm %g, grads %v: below the limit nothing changes", n, g)
	}
	if n := ClipGradNorm(g, 1); n != 5 {
		t.Fatalf("norm before clipping %g, want 5", n)
	}
	coef := float32(1 / (5 + 1e-6)) // torch: max_norm / (total_norm + 1e-6)
	if math.Abs(float64(g[0][0]-3*coef)) > 1e-7 || math.Abs(float64(g[1][1]-4*coef)) > 1e-7 {
		t.Fatalf("clipped grads %v", g)
	}
}

// TestAdamWFirstStepByHand: at step 1, m̂ = g and v̂ = g², so the update is
// p·(1 − lr·wd) − lr·g/(|g| + ε).
func TestAdamWFirstStepByHand(t *testing.T) {
	p := [][]float32{{1, -2, 0.5}}
	g := [][]float32{{0.1, -3, 0}}
	o := NewAdamW([]int{3}, 0.9, 0.999, 1e-8, 0.1)
	o.Update(p, g, 0.01)
	for i, want := range []float64{1*(1-0.001) - 0.01*0.1/(0.1+1e-8), -2*(1-0.001) + 0.01*3/(3+1e-8), 0.5 * (1 - 0.001)} {
		if math.Abs(float64(p[0][i])-want) > 1e-6 {
			t.Errorf("p[%d] = %.8f, want %.8f", i, p[0][i], want)
		}
	}
}
