package datasets

// Row is one packed row of a batch: examples laid end to end, each with its
// own segment id (1, 2, ...) and positions restarting at 0, padding after them
// (segment 0, label -100).
type Row struct {
	IDs, Labels, Positions, Segments []int32
}

// Pack lays examples into rows of seq tokens, in order, starting a new row when
// the next example does not fit. An example longer than seq is split into
// windows of seq tokens, each its own example.
func Pack(examples []Example, seq int) []Row {
	var rows []Row
	var cur *Row
	used, segment := seq, int32(0)
	for _, ex := range examples {
		for start := 0; start < len(ex.IDs); start += seq {
			end := min(start+seq, len(ex.IDs))
			n := end - start
			if used+n > seq {
				rows = append(rows, PaddingRow(seq))
				cur, used, segment = &rows[len(rows)-1], 0, 0
			}
			segment++
			for i := start; i < end; i++ {
				cur.IDs[used] = ex.IDs[i]
				cur.Labels[used] = ex.IDs[i]
				if ex.Labels != nil {
					cur.Labels[used] = ex.Labels[i]
				}
				cur.Positions[used] = int32(i - start)
				cur.Segments[used] = segment
				used++
			}
		}
	}
	return rows
}

// PaddingRow is a row of seq padding tokens: nothing attends to or predicts them.
func PaddingRow(seq int) Row {
	r := Row{IDs: make([]int32, seq), Labels: make([]int32, seq), Positions: make([]int32, seq), Segments: make([]int32, seq)}
	for i := range r.Labels {
		r.Labels[i] = -100
	}
	return r
}
