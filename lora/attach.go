package lora

import (
	"fmt"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/tune-dev/tune/kernels"
)

// Attached is an adapter bound to one graph: it creates the A and B nodes
// (whose values share memory with the Modules, so optimizer updates are seen
// without copying) and implements model.Adapter.
type Attached struct {
	adapter *Adapter
	train   bool
	seed    *G.Node
	params  []Param
}

// Param is a learnable node and the slice it views.
type Param struct {
	Key   string // full PEFT key: ...q_proj.lora_A.weight
	Node  *G.Node
	Value []float32
}

// Attach prepares the adapter for a graph. With train set, dropout is active
// and its masks depend on the seed fed with SetSeed.
func (a *Adapter) Attach(train bool) *Attached {
	return &Attached{adapter: a, train: train}
}

// Project adds scale·dropout(x)·Aᵀ·Bᵀ to y for adapted projections.
func (at *Attached) Project(layer int, module string, x, y *G.Node) (*G.Node, error) {
	m := at.adapter.Module(layer, module)
	if m == nil {
		return y, nil
	}
	g := x.Graph()
	spec := at.adapter.Spec
	key := m.Key()
	w := at.adapter.ModuleWeights(m)
	an := at.param(g, w[0].Key, w[0].Shape[0], w[0].Shape[1], w[0].Value)
	bn := at.param(g, w[1].Key, w[1].Shape[0], w[1].Shape[1], w[1].Value)
	in := x
	if at.train && spec.Dropout > 0 {
		if at.seed == nil {
			at.seed = G.NewVector(g, tensor.Int32, G.WithShape(1), G.WithName("dropout_seed"),
				G.WithValue(tensor.New(tensor.WithShape(1), tensor.WithBacking([]int32{0}))))
		}
		var err error
		if in, err = kernels.Dropout(x, at.seed, spec.Dropout, key); err != nil {
			return nil, err
		}
	}
	down, err := kernels.MatMulT(in, an, 1, key+".lora_A")
	if err != nil {
		return nil, err
	}
	up, err := kernels.MatMulT(down, bn, float32(spec.Scale()), key+".lora_B")
	if err != nil {
		return nil, err
	}
	out, err := G.Add(y, up)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", key, err)
	}
	return out, nil
}

func (at *Attached) param(g *G.ExprGraph, key string, rows, cols int, v []float32) *G.Node {
	n := G.NewMatrix(g, tensor.Float32, G.WithShape(rows, cols), G.WithName(key),
		G.WithValue(tensor.New(tensor.WithShape(rows, cols), tensor.WithBacking(v))))
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

// SetSeed sets the dropout seed for the next run of the graph.
func (at *Attached) SetSeed(s int32) error {
	if at.seed == nil {
		return nil
	}
	return G.Let(at.seed, tensor.New(tensor.WithShape(1), tensor.WithBacking([]int32{s})))
}
