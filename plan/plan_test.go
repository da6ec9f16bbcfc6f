package plan

import (
	"strings"
	"testing"
)

// The verdict against the room the reserve leaves: headroom, little
// headroom, closing named programs (browsers before editors, largest first,
// never "other" or containers), or no fit.
func TestVerdict(t *testing.T) {
	groups := []Group{
		{Kind: kindOther, Names: []string{"postgres"}, RSSBytes: 5e9},
		{Kind: kindBrowsers, Names: []string{"firefox"}, RSSBytes: 3e9},
		{Kind: kindEditors, Names: []string{"code"}, RSSBytes: 1e9},
		{Kind: kindContainers, Names: []string{"dockerd"}, RSSBytes: 1e9},
	}
	for _, tc := range []struct {
		peak  int64
		fits  bool
		want  string
		close int
	}{
		{5e9, true, "fits with headroom", 0},
		{5.8e9, true, "fits, with little headroom", 0},
		{8e9, false, "fits only if you close browsers (firefox, 3.00 GB)", 1},
		{9.5e9, false, "fits only if you close browsers (firefox, 3.00 GB) and editors and IDEs (code, 1.00 GB)", 2},
		{11e9, false, "does not fit: needs 11.00 GB, and 6.00 GB is free beyond the 2.00 GB reserve", 0},
	} {
		p := &Plan{Machine: Machine{Groups: groups}, AvailableBytes: 8e9, ReserveBytes: 2e9, PeakBytes: tc.peak}
		p.verdict()
		if p.Fits != tc.fits || p.Verdict != tc.want || len(p.Close) != tc.close {
			t.Errorf("peak %s: fits %v, %q, close %d; want %v, %q, %d", Bytes(tc.peak), p.Fits, p.Verdict, len(p.Close), tc.fits, tc.want, tc.close)
		}
	}
}

func TestBytes(t *testing.T) {
	for b, want := range map[int64]string{999: "999 B", 1500: "2 kB", 2_500_000: "2 MB", 1_234_000_000: "1.23 GB", -3e9: "-3.00 GB"} {
		if got := Bytes(b); got != want {
			t.Errorf("Bytes(%d) = %q, want %q", b, got, want)
		}
	}
	if !strings.HasSuffix(Bytes(25e9), "GB") {
		t.Error("25e9 not in GB")
	}
}

// A cached step time is used again only under a similar load: measured on
// cores others held, it would predict a quiet machine several times too slow
// (seen: +600% to +1300% after a session at load 8 per core).
func TestSpeedStaleUnderAnotherLoad(t *testing.T) {
	for _, c := range []struct {
		then, now float64
		stale     bool
	}{{0.1, 0.2, false}, {8, 0.5, true}, {0.2, 3, true}, {1.0, 1.4, false}, {0.5, -1, false}} {
		if got := (Speed{Load: c.then}).stale(c.now); got != c.stale {
			t.Errorf("measured at load %v per core, now %v: stale %v, want %v", c.then, c.now, got, c.stale)
		}
	}
}
