package tokenizer

import (
	"container/heap"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"unicode/utf8"
)

// bpe is HF's BPE model, working on ids like tokenizers' Rust
// implementation (merges are (left id, right id) -> (rank, merged id)).
type bpe struct {
	vocab   map[string]int
	idToTok []string             // model vocab only; "" for holes
	merges  map[uint64]mergeInfo // key: pairKey(left, right)

	unkID        int // -1 when there is no unk token
	fuseUnk      bool
	byteFallback bool
	ignoreMerges bool
	contPrefix   string
	endSuffix    string
	byteTokenIDs [256]int // id of "<0xNN>", -1 if absent
	// spaceSplit: no token has "▁" after another character, so no merge
	// crosses the start of a "▁" run, and a SentencePiece-style text (one
	// word to the pre-tokenizer) can be merged a piece at a time.
	spaceSplit    bool
	cacheMu       sync.RWMutex
	cache         map[string][]int
	cacheCapacity int
}

type mergeInfo struct {
	rank, id int32
}

const maxCachedWordLen = 256

// pairKey packs two ids (< 2^32) into one map key; hashing one word is
// noticeably faster than a [2]int in the merge loop.
func pairKey[T int | int32](a, b T) uint64 { return uint64(a)<<32 | uint64(uint32(b)) }

func parseBPE(o jsonObj) (*bpe, error) {
	m := &bpe{unkID: -1, cache: map[string][]int{}, cacheCapacity: 10000}

	vraw, ok := o.m["vocab"]
	if !ok || isNull(vraw) {
		return nil, errAt(joinPath(o.path, "vocab"), "missing")
	}
	if err := json.Unmarshal(vraw, &m.vocab); err != nil {
		return nil, errAt(joinPath(o.path, "vocab"), "expected an object of token -> non-negative id")
	}
	maxID := -1
	for tok, id := range m.vocab {
		if id < 0 {
			return nil, errAt(joinPath(o.path, "vocab"), "token %q has negative id %d", tok, id)
		}
		maxID = max(maxID, id)
	}
	// Ids index a slice: refuse vocabularies that are mostly holes rather
	// than allocate for them (real ones are dense).
	if maxID >= 4*len(m.vocab)+1024 {
		return nil, errAt(joinPath(o.path, "vocab"), "ids are too sparse (largest %d for %d tokens)", maxID, len(m.vocab))
	}
	m.idToTok = make([]string, maxID+1)
	for tok, id := range m.vocab {
		m.idToTok[id] = tok
	}

	var err error
	if m.fuseUnk, err = o.boolean("fuse_unk", false); err != nil {
		return nil, err
	}
	if m.byteFallback, err = o.boolean("byte_fallback", false); err != nil {
		return nil, err
	}
	if m.ignoreMerges, err = o.boolean("ignore_merges", false); err != nil {
		return nil, err
	}
	if m.contPrefix, err = o.str("continuing_subword_prefix", ""); err != nil {
		return nil, err
	}
	if m.endSuffix, err = o.str("end_of_word_suffix", ""); err != nil {
		return nil, err
	}
	unk, err := o.optStr("unk_token")
	if err != nil {
		return nil, err
	}
	if unk != nil {
		id, ok := m.vocab[*unk]
		if !ok {
			return nil, errAt(joinPath(o.path, "unk_token"), "%q is not in model.vocab", *unk)
		}
		m.unkID = id
	}
	for b := range 256 {
		m.byteTokenIDs[b] = -1
		if id, ok := m.vocab[fmt.Sprintf("<0x%02X>", b)]; ok {
			m.byteTokenIDs[b] = id
		}
	}

	pairs, err := parseMerges(o)
	if err != nil {
		return nil, err
	}
	m.spaceSplit = m.canSplitAtSpaces()
	m.merges = make(map[uint64]mergeInfo, len(pairs))
	mpath := joinPath(o.path, "merges")
	for i, p := range pairs {
		a, b := p[0], p[1]
		ia, oka := m.vocab[a]
		ib, okb := m.vocab[b]
		if !oka || !okb {
			return nil, errAt(indexPath(mpath, i), "merge %q %q uses a token not in model.vocab", a, b)
		}
		merged := a + b
		if m.contPrefix != "" {
			merged = a + strings.TrimPrefix(b, m.contPrefix)
		}
		id, ok := m.vocab[merged]
		if !ok {
			return nil, errAt(indexPath(mpath, i), "merge result %q is not in model.vocab", merged)
		}
		// A repeated merge keeps its last rank, as in HF (Rust and JS).
		m.merges[pairKey(ia, ib)] = mergeInfo{rank: int32(i), id: int32(id)}
	}
	return m, nil
}

// parseMerges reads model.merges. The whole-array decodes are the fast path
// (280k merges for Llama 3); the per-element walk only finds the bad entry.
func parseMerges(o jsonObj) ([][2]string, error) {
	raw, ok := o.m["merges"]
	if !ok || isNull(raw) {
		return nil, nil
	}
	var strs []string
	if json.Unmarshal(raw, &strs) == nil {
		out := make([][2]string, len(strs))
		for i, s := range strs {
			a, b, ok := strings.Cut(s, " ")
			if !ok || strings.Contains(b, " ") {
				return nil, errAt(indexPath(joinPath(o.path, "merges"), i), `expected "a b" or ["a","b"]`)
			}
			out[i] = [2]string{a, b}
		}
		return out, nil
	}
	var pairs [][]string
	if json.Unmarshal(raw, &pairs) == nil {
		out := make([][2]string, len(pairs))
		good := true
		for i, p := range pairs {
			if len(p) != 2 {
				good = false
				break
			}
			out[i] = [2]string{p[0], p[1]}
		}
		if good {
			return out, nil
		}
	}
	items, err := o.arr("merges")
	if err != nil {
		return nil, err
	}
	out := make([][2]string, len(items))
	for i, it := range items {
		a, b, err := parseMerge(indexPath(joinPath(o.path, "merges"), i), it)
		if err != nil {
			return nil, err
		}
		out[i] = [2]string{a, b}
	}
	return out, nil
}

// parseMerge accepts both serialisations: "a b" (tokenizers < 0.20) and
// ["a", "b"] (which allows spaces inside tokens).
func parseMerge(path string, raw json.RawMessage) (string, string, error) {
	bad := errAt(path, `expected "a b" or ["a","b"]`)
	var s string
	if json.Unmarshal(raw, &s) == nil {
		a, b, ok := strings.Cut(s, " ")
		if !ok || strings.Contains(b, " ") {
			return "", "", bad
		}
		return a, b, nil
	}
	var pair []string
	if json.Unmarshal(raw, &pair) == nil && len(pair) == 2 {
		return pair[0], pair[1], nil
	}
	return "", "", bad
}

// metaspace is SentencePiece's visible space.
const metaspace = "\u2581"

// canSplitAtSpaces reports whether BPE over a word equals BPE over its
// pieces cut before each "▁" that follows another character: true when no
// token has such a "▁" inside (a merge result is a token, so no merge can
// join across the cut), the cut's "▁" is a token (an unknown-character run
// cannot be fused across it), and no option makes the first character of a
// word special.
func (m *bpe) canSplitAtSpaces() bool {
	if _, ok := m.vocab[metaspace]; !ok || m.contPrefix != "" || m.endSuffix != "" || m.ignoreMerges {
		return false
	}
	for tok := range m.vocab {
		// A "▁" after the leading run follows another character.
		if strings.Contains(strings.TrimLeft(tok, metaspace), metaspace) {
			return false
		}
	}
	return true
}

// MaxWordBytes bounds the BPE merging of one word (a pre-token, or the
// part of a SentencePiece-style text between spaces): merging takes memory
// in proportion to the word, some 40 bytes a character. Encode merges a
// longer word in pieces of this size; EncodeChecked refuses it.
const MaxWordBytes = 1 << 20

// WordTooLongError is EncodeChecked's error for a word over MaxWordBytes.
type WordTooLongError struct{ Bytes int }

func (e *WordTooLongError) Error() string {
	return fmt.Sprintf("a word of %d bytes with no space in it: tune tokenizes words of at most %d KiB", e.Bytes, MaxWordBytes>>10)
}

// tokenizeInto appends the ids of one pre-token to ids. A word over
// MaxWordBytes is an error when strict, else merged in pieces.
func (m *bpe) tokenizeInto(ids []int, word string, strict bool) ([]int, error) {
	for word != "" {
		piece := word
		if m.spaceSplit {
			// Up to the next "▁" that follows another character.
			if i := strings.Index(strings.TrimLeft(word, metaspace), metaspace); i >= 0 {
				piece = word[:len(word)-len(strings.TrimLeft(word, metaspace))+i]
			}
		}
		if len(piece) > MaxWordBytes {
			if strict {
				return ids, &WordTooLongError{Bytes: len(piece)}
			}
			piece = piece[:MaxWordBytes]
			for !utf8.RuneStart(word[len(piece)]) {
				piece = piece[:len(piece)-1]
			}
		}
		ids = append(ids, m.tokenize(piece)...)
		word = word[len(piece):]
	}
	return ids, nil
}

// tokenize turns one word into ids.
func (m *bpe) tokenize(word string) []int {
	if word == "" {
		return nil
	}
	if m.ignoreMerges {
		if id, ok := m.vocab[word]; ok {
			return []int{id}
		}
	}
	if len(word) <= maxCachedWordLen {
		m.cacheMu.RLock()
		ids, ok := m.cache[word]
		m.cacheMu.RUnlock()
		if ok {
			return ids
		}
	}
	ids := m.mergeWord(word)
	if len(word) <= maxCachedWordLen {
		m.cacheMu.Lock()
		if len(m.cache) >= m.cacheCapacity {
			clear(m.cache) // cheap bound; HF's cache also just stops growing
		}
		m.cache[word] = ids
		m.cacheMu.Unlock()
	}
	return ids
}

// symbol and mergeCand are int32 (ids, and positions in a word of at most
// MaxWordBytes): merging takes some 16 bytes a symbol plus 12 a candidate.
type symbol struct {
	id         int32
	prev, next int32 // indexes into the symbol slice, -1 at the ends
	length     int32 // 0 once merged into its left neighbour
}

// mergeWord is tokenizers' Word::merge_all: start from characters (or their
// <0xNN> bytes), then apply the lowest-ranked merge available, leftmost first.
func (m *bpe) mergeWord(word string) []int {
	syms := make([]symbol, 0, len(word))
	pendingUnk := -1 // for fuse_unk
	flushUnk := func() {
		if pendingUnk >= 0 {
			syms = append(syms, symbol{id: int32(pendingUnk), length: 1})
			pendingUnk = -1
		}
	}
	for i, r := range word {
		s := string(r)
		if i > 0 && m.contPrefix != "" {
			s = m.contPrefix + s
		}
		if i+utf8.RuneLen(r) == len(word) && m.endSuffix != "" {
			s += m.endSuffix
		}
		if id, ok := m.vocab[s]; ok {
			flushUnk()
			syms = append(syms, symbol{id: int32(id), length: 1})
			continue
		}
		if m.byteFallback {
			ids := make([]int, 0, 4)
			for _, b := range []byte(string(r)) {
				if id := m.byteTokenIDs[b]; id >= 0 {
					ids = append(ids, id)
				}
			}
			if len(ids) == utf8.RuneLen(r) {
				flushUnk()
				for _, id := range ids {
					syms = append(syms, symbol{id: int32(id), length: 1})
				}
				continue
			}
		}
		if m.unkID >= 0 {
			if !m.fuseUnk {
				flushUnk()
			}
			pendingUnk = m.unkID
		}
		// No unk token: HF drops the character.
	}
	flushUnk()
	for i := range syms {
		syms[i].prev, syms[i].next = int32(i-1), int32(i+1)
	}
	if len(syms) > 0 {
		syms[len(syms)-1].next = -1
	}

	h := &mergeHeap{}
	for i := 0; i+1 < len(syms); i++ {
		if mi, ok := m.merges[pairKey(syms[i].id, syms[i+1].id)]; ok {
			h.items = append(h.items, mergeCand{pos: int32(i), rank: mi.rank, newID: mi.id})
		}
	}
	heap.Init(h)
	for h.Len() > 0 {
		c := heap.Pop(h).(mergeCand)
		cur := &syms[c.pos]
		if cur.length == 0 || cur.next < 0 {
			continue
		}
		right := &syms[cur.next]
		// Stale candidate: the pair changed since it was queued.
		mi, ok := m.merges[pairKey(cur.id, right.id)]
		if !ok || mi.id != c.newID {
			continue
		}
		cur.id = c.newID
		cur.length += right.length
		right.length = 0
		cur.next = right.next
		if cur.next >= 0 {
			syms[cur.next].prev = c.pos
		}
		if cur.prev >= 0 {
			if mi, ok := m.merges[pairKey(syms[cur.prev].id, cur.id)]; ok {
				heap.Push(h, mergeCand{pos: cur.prev, rank: mi.rank, newID: mi.id})
			}
		}
		if cur.next >= 0 {
			if mi, ok := m.merges[pairKey(cur.id, syms[cur.next].id)]; ok {
				heap.Push(h, mergeCand{pos: c.pos, rank: mi.rank, newID: mi.id})
			}
		}
	}
	out := make([]int, 0, len(syms))
	for i := int32(0); i >= 0 && int(i) < len(syms); i = syms[i].next {
		out = append(out, int(syms[i].id))
	}
	return out
}

type mergeCand struct {
	pos, rank, newID int32
}

type mergeHeap struct{ items []mergeCand }

func (h *mergeHeap) Len() int { return len(h.items) }
func (h *mergeHeap) Less(i, j int) bool {
	a, b := h.items[i], h.items[j]
	if a.rank != b.rank {
		return a.rank < b.rank
	}
	return a.pos < b.pos
}
func (h *mergeHeap) Swap(i, j int) { h.items[i], h.items[j] = h.items[j], h.items[i] }
func (h *mergeHeap) Push(x any)    { h.items = append(h.items, x.(mergeCand)) }
func (h *mergeHeap) Pop() any {
	n := len(h.items) - 1
	x := h.items[n]
	h.items = h.items[:n]
	return x
}
