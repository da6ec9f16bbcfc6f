package datasets

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"sync"

	"github.com/parquet-go/parquet-go"
)

// parquetSource reads the rows of a Parquet file (the format of most Hugging
// Face datasets) one row group at a time; a row becomes a JSON object of its
// columns, so that every format reads it as it reads a JSONL record. Rows are
// numbered from 0 in messages, as the Hugging Face viewer and pandas do.
type parquetSource struct {
	path   string
	f      *os.File
	pf     *parquet.File
	starts []int64 // first row of each row group, and the total at the end

	mu    sync.Mutex
	cache map[int64][][]byte // block of blockRows rows -> their JSON
	order []int64            // cached blocks, oldest first
}

const (
	blockRows   = 64
	cacheBlocks = 8
)

func openParquet(path string) (*parquetSource, error) {
	f, size, err := openSized(path)
	if err != nil {
		return nil, err
	}
	pf, err := parquet.OpenFile(f, size, parquet.SkipPageIndex(true), parquet.SkipBloomFilters(true), parquet.ReadBufferSize(1<<20))
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: not a Parquet file: %v", path, err)
	}
	p := &parquetSource{path: path, f: f, pf: pf, cache: map[int64][][]byte{}}
	var n int64
	for _, rg := range pf.RowGroups() {
		p.starts = append(p.starts, n)
		n += rg.NumRows()
	}
	p.starts = append(p.starts, n)
	if n > 1<<31-1 {
		f.Close()
		return nil, fmt.Errorf("%s: %d rows; at most 2^31-1 are supported", path, n)
	}
	return p, nil
}

func (p *parquetSource) Len() int     { return int(p.starts[len(p.starts)-1]) }
func (p *parquetSource) Close() error { return p.f.Close() }

func (p *parquetSource) Where(i int) string { return fmt.Sprintf("%s: row %d", p.path, i) }

// read calls fn with rows [from, to) of the file, in order.
func (p *parquetSource) read(from, to int64, fn func(i int64, js []byte) error) error {
	rgs := p.pf.RowGroups()
	g := sort.Search(len(rgs), func(g int) bool { return p.starts[g+1] > from })
	buf := make([]parquet.Row, 16)
	for i := from; g < len(rgs) && i < to; g++ {
		err := func() (err error) {
			rows := rgs[g].Rows()
			defer rows.Close()
			if local := i - p.starts[g]; local > 0 {
				if err := rows.SeekToRow(local); err != nil {
					return fmt.Errorf("%s: %w", p.Where(int(i)), err)
				}
			}
			for i < to && i < p.starts[g+1] {
				n, rerr := rows.ReadRows(buf[:min(int64(len(buf)), to-i)])
				for _, row := range buf[:n] {
					js, err := p.rowJSON(row)
					if err != nil {
						return fmt.Errorf("%s: %w", p.Where(int(i)), err)
					}
					if err := fn(i, js); err != nil {
						return err
					}
					i++
				}
				if rerr != nil && !errors.Is(rerr, io.EOF) {
					return fmt.Errorf("%s: %w", p.Where(int(i)), rerr)
				}
				if n == 0 {
					if i < min(to, p.starts[g+1]) {
						return fmt.Errorf("%s: row group %d ends early", p.Where(int(i)), g)
					}
					break
				}
			}
			return nil
		}()
		if err != nil {
			return err
		}
	}
	return nil
}

// rowJSON reconstructs a row as Go values and encodes it as a JSON object.
func (p *parquetSource) rowJSON(row parquet.Row) (js []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("cannot decode the row: %v", r)
		}
	}()
	var v any
	if err := p.pf.Schema().Reconstruct(&v, row); err != nil {
		return nil, fmt.Errorf("cannot decode the row: %v", err)
	}
	return json.Marshal(bytesToStrings(v))
}

// bytesToStrings turns byte arrays (BYTE_ARRAY columns without a STRING
// annotation) into strings, which JSON would otherwise write as base64.
func bytesToStrings(v any) any {
	switch x := v.(type) {
	case []byte:
		return string(x)
	case map[string]any:
		for k, e := range x {
			x[k] = bytesToStrings(e)
		}
	case []any:
		for i, e := range x {
			x[i] = bytesToStrings(e)
		}
	}
	return v
}

func (p *parquetSource) Scan(fn func(i int, r record) error) error {
	return p.read(0, int64(p.Len()), func(i int64, js []byte) error {
		return fn(int(i), record{json: js})
	})
}

// At reads the block of rows around i (cached: neighbours are often read
// together, as in an unshuffled pass).
func (p *parquetSource) At(i int) (record, error) {
	b := int64(i) / blockRows
	p.mu.Lock()
	block, ok := p.cache[b]
	p.mu.Unlock()
	if !ok {
		from := b * blockRows
		to := min(from+blockRows, int64(p.Len()))
		block = make([][]byte, 0, to-from)
		if err := p.read(from, to, func(_ int64, js []byte) error {
			block = append(block, js)
			return nil
		}); err != nil {
			return record{}, err
		}
		p.mu.Lock()
		if _, ok := p.cache[b]; !ok {
			p.cache[b] = block
			p.order = append(p.order, b)
			if len(p.order) > cacheBlocks {
				delete(p.cache, p.order[0])
				p.order = p.order[1:]
			}
		}
		p.mu.Unlock()
	}
	k := int64(i) - b*blockRows
	if k >= int64(len(block)) {
		return record{}, fmt.Errorf("%s: row missing", p.Where(i))
	}
	return record{json: block[k]}, nil
}
