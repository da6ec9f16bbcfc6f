package datasets

import (
	"fmt"
	"math"
	"math/rand/v2"
)

// Cursor is where a Loader stands: the epoch, the position in that epoch's
// order of the example the next row starts with, and the window of it (for
// truncation split). A step checkpoint saves it; Seek restores it, and the
// rows that follow are exactly those an uninterrupted run would have seen.
type Cursor struct {
	Epoch   int `json:"epoch"`
	Example int `json:"example"`
	Window  int `json:"window"`
	// Data identifies the examples (their records and lengths) and the row
	// layout the cursor counts in; a resumed run checks it.
	Data string `json:"data,omitempty"`
}

// LoaderOptions lay examples into rows.
type LoaderOptions struct {
	Seq     int  // tokens per row
	Packing bool // several examples per row; else one per row, padded
	Shuffle bool // a new order every epoch, from Seed and the epoch
	Seed    uint64
}

// Loader yields the rows of a Dataset epoch after epoch. Each epoch's order is
// drawn from (seed, epoch): every source's examples weight times (whole copies,
// then a seeded subset for the fraction), shuffled when asked. Rows are filled
// greedily in that order; examples are read and tokenized when a row needs
// them.
type Loader struct {
	ds    *Dataset
	opt   LoaderOptions
	pk    packer
	epoch int
	order []uint32 // global ids
	k, w  int

	cacheGID uint32
	cacheEx  *Example
}

// Loader returns a loader at the start of epoch 0.
func (s *Dataset) Loader(opt LoaderOptions) (*Loader, error) {
	if opt.Seq <= 0 {
		return nil, fmt.Errorf("datasets: row length %d must be positive", opt.Seq)
	}
	maxLen := min(s.d.spec.MaxLen, opt.Seq)
	l := &Loader{ds: s, opt: opt, pk: packer{seq: opt.Seq, maxLen: maxLen, packing: opt.Packing, split: s.d.spec.Truncation == TruncSplit, length: s.d.length}}
	if s.d.spec.MaxLen > opt.Seq && s.d.spec.Truncation != TruncSplit {
		return nil, fmt.Errorf("datasets: examples of up to %d tokens do not fit rows of %d", s.d.spec.MaxLen, opt.Seq)
	}
	l.order = s.order(0, opt)
	return l, nil
}

// Cursor is the loader's position.
func (l *Loader) Cursor() Cursor {
	return Cursor{Epoch: l.epoch, Example: l.k, Window: l.w, Data: l.fingerprint()}
}

func (l *Loader) fingerprint() string {
	return fmt.Sprintf("%s-%d-%d-%t-%t", l.ds.fingerprint, l.opt.Seq, l.pk.maxLen, l.opt.Packing, l.opt.Shuffle)
}

// Seek moves to a saved cursor. The cursor's data must be these data.
func (l *Loader) Seek(c Cursor) error {
	if c.Data != "" && c.Data != l.fingerprint() {
		return fmt.Errorf("the training data or their row layout differ from the checkpoint's (%s now, %s then): resuming would not see the same rows", l.fingerprint(), c.Data)
	}
	if c.Epoch < 0 || c.Example < 0 || c.Window < 0 {
		return fmt.Errorf("datasets: invalid cursor %+v", c)
	}
	if c.Epoch != l.epoch {
		l.epoch = c.Epoch
		l.order = l.ds.order(c.Epoch, l.opt)
	}
	if c.Example > len(l.order) {
		return fmt.Errorf("datasets: cursor at example %d of an epoch of %d", c.Example, len(l.order))
	}
	l.k, l.w = c.Example, c.Window
	return nil
}

// Done reports whether the current epoch has no row left.
func (l *Loader) Done() bool { return l.k >= len(l.order) }

// NextEpoch moves to the start of the next epoch.
func (l *Loader) NextEpoch() {
	l.epoch++
	l.order = l.ds.order(l.epoch, l.opt)
	l.k, l.w = 0, 0
}

// Epoch is the current epoch.
func (l *Loader) Epoch() int { return l.epoch }

// Next returns the next row of the current epoch; false when it has none left.
func (l *Loader) Next() (Row, bool, error) {
	if l.Done() {
		return Row{}, false, nil
	}
	var pieces []piece
	pieces, l.k, l.w = l.pk.next(l.order, l.k, l.w, nil)
	row := PaddingRow(l.opt.Seq)
	used := 0
	for si, p := range pieces {
		gid := l.order[p.k]
		ex, err := l.example(gid)
		if err != nil {
			return Row{}, false, err
		}
		for i := p.from; i < p.to; i++ {
			row.IDs[used] = ex.IDs[i]
			row.Labels[used] = ex.IDs[i]
			if ex.Labels != nil {
				row.Labels[used] = ex.Labels[i]
			}
			row.Positions[used] = int32(i - p.from)
			row.Segments[used] = int32(si + 1)
			used++
		}
	}
	return row, true, nil
}

// example reads one example, keeping the last one (its windows may span rows).
func (l *Loader) example(gid uint32) (*Example, error) {
	if l.cacheEx != nil && l.cacheGID == gid {
		return l.cacheEx, nil
	}
	ex, err := l.ds.d.load(gid)
	if err != nil {
		return nil, err
	}
	l.cacheGID, l.cacheEx = gid, &ex
	return l.cacheEx, nil
}

// RowsInEpoch is the number of rows of an epoch (counted from the examples'
// lengths, nothing read).
func (l *Loader) RowsInEpoch(epoch int) int {
	order := l.order
	if epoch != l.epoch {
		order = l.ds.order(epoch, l.opt)
	}
	rows, k, w := 0, 0, 0
	var buf []piece
	for k < len(order) {
		buf, k, w = l.pk.next(order, k, w, buf[:0])
		rows++
	}
	return rows
}

// order is the global ids of an epoch's examples.
func (s *Dataset) order(epoch int, opt LoaderOptions) []uint32 {
	n := 0
	for pi, m := range s.members {
		n += int(math.Floor(s.weights[pi]))*len(m) + int(math.Round((s.weights[pi]-math.Floor(s.weights[pi]))*float64(len(m))))
	}
	out := make([]uint32, 0, n)
	for pi, m := range s.members {
		w := s.weights[pi]
		whole := int(math.Floor(w))
		for range whole {
			for _, i := range m {
				out = append(out, s.gid(pi, i))
			}
		}
		if extra := int(math.Round((w - float64(whole)) * float64(len(m)))); extra > 0 {
			// A seeded subset for the fraction, another each epoch, in file order.
			r := rand.New(rand.NewPCG(opt.Seed^0x9e3779b97f4a7c15, uint64(epoch)<<20|uint64(pi)))
			pick := make([]bool, len(m))
			for _, j := range r.Perm(len(m))[:extra] {
				pick[j] = true
			}
			for j, i := range m {
				if pick[j] {
					out = append(out, s.gid(pi, i))
				}
			}
		}
	}
	if opt.Shuffle {
		r := rand.New(rand.NewPCG(opt.Seed, uint64(epoch)+1))
		r.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	}
	return out
}

// piece is the window [from, to) of the example at position k of an order.
type piece struct{ k, from, to int }

// packer lays examples into rows: greedily in order, a new row when the next
// window does not fit (packing), or one window per row. Without truncation
// split an example is one window; with it, windows of maxLen tokens.
type packer struct {
	seq, maxLen    int
	packing, split bool
	length         func(gid uint32) int
}

// next returns the pieces of the row that starts at (k, w) and the position
// after it.
func (p *packer) next(order []uint32, k, w int, out []piece) ([]piece, int, int) {
	used := 0
	for k < len(order) {
		n := p.length(order[k])
		from, to := 0, n
		if p.split {
			from = w * p.maxLen
			to = min(from+p.maxLen, n)
		}
		if used > 0 && (!p.packing || used+to-from > p.seq) {
			break
		}
		out = append(out, piece{k: k, from: from, to: to})
		used += to - from
		if p.split && to < n {
			w++
		} else {
			k, w = k+1, 0
		}
	}
	return out, k, w
}
