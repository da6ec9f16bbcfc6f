package tokenizer

// postProcessor adds the special tokens around one encoded sequence (HF's
// post_processor, single-sequence case only).
type postProcessor interface {
	process(ids []int, addSpecial bool) []int
}

// templateProcessor is TemplateProcessing's "single" template, already
// resolved to ids; a nil element stands for the sequence ($A).
type templateProcessor struct {
	items [][]int
}

func (t templateProcessor) process(ids []int, addSpecial bool) []int {
	if !addSpecial {
		return ids
	}
	var out []int
	for _, it := range t.items {
		if it == nil {
			out = append(out, ids...)
		} else {
			out = append(out, it...)
		}
	}
	return out
}

// wrapProcessor is RobertaProcessing / BertProcessing (cls A sep) and the
// add_bos_token/add_eos_token rule: optional ids before and after.
type wrapProcessor struct {
	before, after []int
}

func (w wrapProcessor) process(ids []int, addSpecial bool) []int {
	if !addSpecial {
		return ids
	}
	out := make([]int, 0, len(w.before)+len(ids)+len(w.after))
	out = append(out, w.before...)
	out = append(out, ids...)
	return append(out, w.after...)
}

// noopProcessor is ByteLevel: it only fixes offsets, which we do not keep.
type noopProcessor struct{}

func (noopProcessor) process(ids []int, _ bool) []int { return ids }

type processorSeq []postProcessor

func (s processorSeq) process(ids []int, addSpecial bool) []int {
	for _, p := range s {
		ids = p.process(ids, addSpecial)
	}
	return ids
}

func parsePostProcessor(o jsonObj) (postProcessor, error) {
	t, err := o.typ()
	if err != nil {
		return nil, err
	}
	switch t {
	case "ByteLevel":
		return noopProcessor{}, nil
	case "Sequence":
		seq, err := parseSeq(o, "processors", parsePostProcessor)
		if err != nil {
			return nil, err
		}
		return processorSeq(seq), nil
	case "RobertaProcessing", "BertProcessing":
		cls, err := parseTokenPair(o, "cls")
		if err != nil {
			return nil, err
		}
		sep, err := parseTokenPair(o, "sep")
		if err != nil {
			return nil, err
		}
		return wrapProcessor{before: []int{cls}, after: []int{sep}}, nil
	case "TemplateProcessing":
		return parseTemplate(o)
	default:
		return nil, errAt(joinPath(o.path, "type"), "unsupported post-processor %q", t)
	}
}

// parseTokenPair reads Roberta's ["</s>", 2].
func parseTokenPair(o jsonObj, key string) (int, error) {
	items, err := o.arr(key)
	if err != nil {
		return 0, err
	}
	p := joinPath(o.path, key)
	if len(items) != 2 {
		return 0, errAt(p, `expected ["token", id]`)
	}
	return parseInt(indexPath(p, 1), items[1])
}

func parseTemplate(o jsonObj) (postProcessor, error) {
	specials := map[string][]int{}
	st, ok, err := o.obj("special_tokens")
	if err != nil {
		return nil, err
	}
	if ok {
		for name, raw := range st.m {
			p := joinPath(st.path, name)
			so, ok, err := parseObj(p, raw)
			if err != nil {
				return nil, err
			}
			if !ok {
				return nil, errAt(p, "expected an object, got null")
			}
			idsRaw, err := so.arr("ids")
			if err != nil {
				return nil, err
			}
			ids := make([]int, 0, len(idsRaw))
			for i, r := range idsRaw {
				id, err := parseInt(indexPath(joinPath(so.path, "ids"), i), r)
				if err != nil {
					return nil, err
				}
				ids = append(ids, id)
			}
			specials[name] = ids
		}
	}
	single, err := o.arr("single")
	if err != nil {
		return nil, err
	}
	var tp templateProcessor
	for i, raw := range single {
		p := indexPath(joinPath(o.path, "single"), i)
		it, ok, err := parseObj(p, raw)
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, errAt(p, "expected an object, got null")
		}
		switch {
		case it.has("SpecialToken"):
			sp, _, err := it.obj("SpecialToken")
			if err != nil {
				return nil, err
			}
			name, err := sp.str("id", "")
			if err != nil {
				return nil, err
			}
			ids, ok := specials[name]
			if !ok {
				return nil, errAt(joinPath(sp.path, "id"), "%q is not in special_tokens", name)
			}
			tp.items = append(tp.items, append([]int{}, ids...))
		case it.has("Sequence"):
			tp.items = append(tp.items, nil)
		default:
			return nil, errAt(p, `expected {"SpecialToken": ...} or {"Sequence": ...}`)
		}
	}
	return tp, nil
}

// firstSpecial is the leading special id of a post-processor, used as the
// BOS when tokenizer_config.json names none.
func firstSpecial(p postProcessor) (int, bool) {
	switch p := p.(type) {
	case templateProcessor:
		if len(p.items) > 0 && len(p.items[0]) > 0 {
			return p.items[0][0], true
		}
	case wrapProcessor:
		if len(p.before) > 0 {
			return p.before[0], true
		}
	case processorSeq:
		for i := len(p) - 1; i >= 0; i-- {
			if id, ok := firstSpecial(p[i]); ok {
				return id, true
			}
		}
	}
	return 0, false
}
