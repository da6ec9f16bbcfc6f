package datasets

// Row is one packed row of a batch: examples laid end to end, each with its
// own segment id (1, 2, ...) and positions restarting at 0, padding after them
// (segment 0, label -100).
type Row struct {
	IDs, Labels, Positions, Segments []int32
}

// PaddingRow is a row of seq padding tokens: nothing attends to or predicts them.
func PaddingRow(seq int) Row {
	r := Row{IDs: make([]int32, seq), Labels: make([]int32, seq), Positions: make([]int32, seq), Segments: make([]int32, seq)}
	for i := range r.Labels {
		r.Labels[i] = -100
	}
	return r
}
