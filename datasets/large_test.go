package datasets

import (
	"bufio"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"
)

// TestLargeJSONLBoundedMemory generates a 1 GiB JSONL file of pre-tokenized
// records and opens it: every record is indexed, parsed and measured by the
// counting pass, and a few thousand rows are read back through a loader,
// while the heap stays far below the file's size.
func TestLargeJSONLBoundedMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("writes and reads 1 GiB (-short)")
	}
	const (
		size    = 1 << 30
		perLine = 1200 // ids a record: about 5.3 kB of JSON
		vocab   = 50000
	)
	path := filepath.Join(t.TempDir(), "big.jsonl")
	start := time.Now()
	records, tokens := writeLarge(t, path, size, perLine, vocab)
	t.Logf("wrote %d records (%d tokens, 1 GiB) in %v", records, tokens, time.Since(start).Round(time.Millisecond))

	runtime.GC()
	var base runtime.MemStats
	runtime.ReadMemStats(&base)
	peak := base.HeapAlloc
	var mu sync.Mutex
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		var m runtime.MemStats
		for {
			select {
			case <-done:
				return
			case <-time.After(5 * time.Millisecond):
			}
			runtime.ReadMemStats(&m)
			mu.Lock()
			peak = max(peak, m.HeapAlloc)
			mu.Unlock()
		}
	}()

	start = time.Now()
	d, err := Open(Spec{Train: []Source{{Path: path, Format: FormatPretokenized}}, Vocab: vocab, MaxLen: 2048, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	counted := time.Since(start)
	l, err := d.Train.Loader(LoaderOptions{Seq: 2048, Packing: true, Shuffle: true, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	rows := 0
	for ; rows < 2000; rows++ {
		if _, ok, err := l.Next(); err != nil || !ok {
			t.Fatalf("row %d: %v %v", rows, ok, err)
		}
	}
	close(done)
	wg.Wait()
	var end runtime.MemStats
	runtime.ReadMemStats(&end)

	if d.Stats.Records != records || d.Stats.TrainTokens != tokens {
		t.Errorf("counted %d records, %d tokens; wrote %d, %d", d.Stats.Records, d.Stats.TrainTokens, records, tokens)
	}
	grew := int64(peak) - int64(base.HeapAlloc)
	t.Logf("counting pass %v (%.0f MB/s); %d shuffled rows read in %v; peak heap %.1f MB above the start (%.1f MB at the start), heap from the OS %.1f MB",
		counted.Round(time.Millisecond), float64(size)/1e6/counted.Seconds(), rows, (time.Since(start) - counted).Round(time.Millisecond),
		float64(grew)/1e6, float64(base.HeapAlloc)/1e6, float64(end.HeapSys)/1e6)
	if grew > 200<<20 {
		t.Errorf("peak heap grew by %.1f MB reading 1 GiB; want < 200 MB", float64(grew)/1e6)
	}
}

// writeLarge writes JSONL records {"input_ids": [...]} of perLine ids until the
// file reaches size bytes.
func writeLarge(t *testing.T, path string, size int64, perLine, vocab int) (records int, tokens int64) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	var written int64
	line := make([]byte, 0, 16*perLine)
	x := uint32(12345)
	for written < size {
		line = append(line[:0], `{"input_ids": [`...)
		n := perLine/2 + int(x%uint32(perLine))
		for i := range n {
			x = x*1664525 + 1013904223
			if i > 0 {
				line = append(line, ',')
			}
			line = strconv.AppendInt(line, int64(x>>8)%int64(vocab), 10)
		}
		line = append(line, "]}\n"...)
		if _, err := w.Write(line); err != nil {
			t.Fatal(err)
		}
		written += int64(len(line))
		records++
		tokens += int64(min(n, 2048))
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return records, tokens
}
