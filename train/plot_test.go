package train

import (
	"fmt"
	"image"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestPlotLossLegendInside: the legend stands inside the picture, clear of
// its right edge (it was cut there): the eval swatch's pixels stay away
// from the last columns.
func TestPlotLossLegendInside(t *testing.T) {
	dir := t.TempDir()
	var b strings.Builder
	for s := 1; s <= 20; s++ {
		fmt.Fprintf(&b, `{"step": %d, "loss": %g}`+"\n", s, 5-float64(s)/10)
		if s%10 == 0 {
			fmt.Fprintf(&b, `{"step": %d, "eval_loss": %g}`+"\n", s, 4.8-float64(s)/10)
		}
	}
	metrics, pngPath := filepath.Join(dir, "metrics.jsonl"), filepath.Join(dir, "loss.png")
	os.WriteFile(metrics, []byte(b.String()), 0o644)
	if err := PlotLoss(metrics, pngPath); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(pngPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	r := img.Bounds()
	top := image.Rect(r.Min.X, r.Min.Y, r.Max.X, r.Min.Y+r.Dy()/5) // where the legend is
	found, rightmost := false, 0
	for y := top.Min.Y; y < top.Max.Y; y++ {
		for x := top.Min.X; x < top.Max.X; x++ {
			c, g, bl, _ := img.At(x, y).RGBA()
			if c>>8 == uint32(evalColor.R) && g>>8 == uint32(evalColor.G) && bl>>8 == uint32(evalColor.B) {
				found, rightmost = true, max(rightmost, x)
			}
		}
	}
	if !found || rightmost >= r.Max.X-4 {
		t.Fatalf("eval legend swatch found %v, rightmost pixel at x=%d of %d", found, rightmost, r.Dx())
	}
}
