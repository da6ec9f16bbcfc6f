package lora

import (
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/tune-dev/tune/kernels"
	"github.com/tune-dev/tune/model"
)

// Attached is an adapter bound to one graph: it creates the A and B nodes
// (whose values share memory with the Modules, so optimizer updates are seen
// without copying) and implements model.Adapter.
type Attached struct {
	adapter *Adapter
	train   bool
	params  []Param
}

// Param is a learnable node and the slice it views.
type Param struct {
	Key   string // full PEFT key: ...q_proj.lora_A.weight
	Node  *G.Node
	Value []float32
}

// Attach prepares the adapter for a graph. With train set, dropout is active
// (its masks follow the graph's seed, model.Graph.SetSeed).
func (a *Adapter) Attach(train bool) *Attached {
	return &Attached{adapter: a, train: train}
}

// LoRANodes gives the model the learnable A and B (and DoRA's M) nodes of
// an adapted projection, or nil.
func (at *Attached) LoRANodes(g *G.ExprGraph, layer int, module string) *model.LoRANodes {
	m := at.adapter.Module(layer, module)
	if m == nil {
		return nil
	}
	spec := at.adapter.Spec
	key := m.Key()
	w := at.adapter.ModuleWeights(m)
	ln := &model.LoRANodes{
		A:     at.param(g, w[0].Key, w[0].Shape, w[0].Value),
		B:     at.param(g, w[1].Key, w[1].Shape, w[1].Value),
		Scale: float32(spec.Scale()),
	}
	if len(w) > 2 {
		ln.M = at.param(g, w[2].Key, w[2].Shape, w[2].Value)
	}
	if at.train && spec.Dropout > 0 {
		ln.Dropout, ln.Salt = spec.Dropout, kernels.DropoutSalt(key)
	}
	return ln
}

func (at *Attached) param(g *G.ExprGraph, key string, shape []int, v []float32) *G.Node {
	n := G.NewTensor(g, tensor.Float32, len(shape), G.WithShape(shape...), G.WithName(key),
		G.WithValue(tensor.New(tensor.WithShape(shape...), tensor.WithBacking(v))))
	at.params = append(at.params, Param{Key: key, Node: n, Value: v})
	return n
}

// Params are the learnable nodes created so far, in attach order.
func (at *Attached) Params() []Param { return at.params }

// Nodes are the learnable nodes, for gorgonia.Grad and BindDualValues.
func (at *Attached) Nodes() G.Nodes {
	ns := make(G.Nodes, len(at.params))
	for i, p := range at.params {
		ns[i] = p.Node
	}
	return ns
}
