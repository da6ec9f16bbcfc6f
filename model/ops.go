package model

import (
	"fmt"
	"hash"
	"hash/fnv"

	"github.com/chewxy/hm"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// port is the type of one input of a kernel op: dims 0 means a float32 scalar.
type port struct {
	dims  int
	dtype tensor.Dtype
}

func f32port(dims int) port { return port{dims, tensor.Float32} }
func i32port(dims int) port { return port{dims, tensor.Int32} }

func (p port) hmType() hm.Type {
	if p.dims == 0 {
		return p.dtype
	}
	return G.TensorType{Dims: p.dims, Of: p.dtype}
}

// kernelOp is a Gorgonia op whose forward and backward are functions of this
// package. Every op of tune is one of these, so the Gorgonia plumbing is written
// once. The name is the op's identity for Gorgonia's hash-consing: it must
// include the names of the frozen weights the op holds, or two projections of
// the same input with equal shapes would be merged into one node.
type kernelOp struct {
	name  string
	in    []port
	out   int // output dims; 0 is a float32 scalar
	shape func(in []tensor.Shape) (tensor.Shape, error)
	do    func(out []float32, in []G.Value) error
	// diff marks the inputs with a gradient; grad builds their gradient nodes.
	diff []bool
	grad func(in G.Nodes, out, dout *G.Node) (G.Nodes, error)

	// last is the output of the previous run, reused by the next one: the
	// graph runs again every step with the same shapes, and a fresh
	// allocation per op per step is most of the garbage a training run makes.
	// Every do function writes its whole output, so nothing needs clearing.
	// The caller reads what it needs (loss, gradients) before the next run.
	last *tensor.Dense
}

func (o *kernelOp) Arity() int { return len(o.in) }

func (o *kernelOp) Type() hm.Type {
	ts := make([]hm.Type, 0, len(o.in)+1)
	for _, p := range o.in {
		ts = append(ts, p.hmType())
	}
	ts = append(ts, f32port(o.out).hmType())
	return hm.NewFnType(ts...)
}

func (o *kernelOp) InferShape(ds ...G.DimSizer) (tensor.Shape, error) {
	shapes := make([]tensor.Shape, len(ds))
	for i, d := range ds {
		s, ok := d.(tensor.Shape)
		if !ok {
			return nil, fmt.Errorf("%s: input %d has no known shape", o.name, i)
		}
		shapes[i] = s
	}
	return o.shape(shapes)
}

func (o *kernelOp) Do(vals ...G.Value) (G.Value, error) {
	if len(vals) != len(o.in) {
		return nil, fmt.Errorf("%s: got %d inputs, want %d", o.name, len(vals), len(o.in))
	}
	shapes := make([]tensor.Shape, len(vals))
	for i, v := range vals {
		shapes[i] = v.Shape()
	}
	s, err := o.shape(shapes)
	if err != nil {
		return nil, err
	}
	out := o.last
	if out == nil || !out.Shape().Eq(s) {
		out = tensor.New(tensor.Of(tensor.Float32), tensor.WithShape(s...))
		o.last = out
	}
	if err := o.do(out.Float32s(), vals); err != nil {
		return nil, fmt.Errorf("%s: %w", o.name, err)
	}
	return out, nil
}

func (o *kernelOp) ReturnsPtr() bool      { return false }
func (o *kernelOp) CallsExtern() bool     { return false }
func (o *kernelOp) OverwritesInput() int  { return -1 }
func (o *kernelOp) WriteHash(h hash.Hash) { fmt.Fprint(h, o.name) }
func (o *kernelOp) String() string        { return o.name }

func (o *kernelOp) Hashcode() uint32 {
	h := fnv.New32a()
	o.WriteHash(h)
	return h.Sum32()
}

func (o *kernelOp) DiffWRT(int) []bool { return o.diff }

func (o *kernelOp) SymDiff(in G.Nodes, out, dout *G.Node) (G.Nodes, error) {
	if o.grad == nil {
		return nil, fmt.Errorf("%s has no gradient", o.name)
	}
	return o.grad(in, out, dout)
}

// apply adds op to the graph over its inputs. An op serves one node: its
// output buffer is reused run after run.
func apply(o *kernelOp, in ...*G.Node) (*G.Node, error) {
	n, err := G.ApplyOp(o, in...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", o.name, err)
	}
	return n, nil
}

// f32s and i32s read an input value's elements.
func f32s(v G.Value) []float32 {
	switch d := v.Data().(type) {
	case []float32:
		return d
	case float32:
		return []float32{d}
	}
	panic(fmt.Sprintf("model: value of type %T is not float32", v.Data()))
}

func i32s(v G.Value) []int32 { return v.Data().([]int32) }

// sameShape is the shape function of ops whose output is shaped like input i.
func sameShape(i int) func([]tensor.Shape) (tensor.Shape, error) {
	return func(in []tensor.Shape) (tensor.Shape, error) { return in[i].Clone(), nil }
}

// multiGrad turns a backward op that writes several gradients one after another
// into its flat output into one gradient node per input: Gorgonia ops return one
// value, while attention and SwiGLU produce several gradients in one pass.
func multiGrad(bwd *kernelOp, args G.Nodes, parts []*G.Node) (G.Nodes, error) {
	total := 0
	shapes := make([]tensor.Shape, len(parts))
	for i, p := range parts {
		if p != nil {
			shapes[i] = p.Shape().Clone()
			total += shapes[i].TotalSize()
		}
	}
	bwd.out = 1
	bwd.shape = func([]tensor.Shape) (tensor.Shape, error) { return tensor.Shape{total}, nil }
	flat, err := apply(bwd, args...)
	if err != nil {
		return nil, err
	}
	grads := make(G.Nodes, len(parts))
	off := 0
	for i, s := range shapes {
		if s == nil {
			continue
		}
		n, lo := s.TotalSize(), off
		part := &kernelOp{
			name:  fmt.Sprintf("%s[%d:%d]", bwd.name, lo, lo+n),
			in:    []port{f32port(1)},
			out:   len(s),
			shape: func([]tensor.Shape) (tensor.Shape, error) { return s.Clone(), nil },
			do: func(out []float32, in []G.Value) error {
				copy(out, f32s(in[0])[lo:lo+n])
				return nil
			},
		}
		if grads[i], err = apply(part, flat); err != nil {
			return nil, err
		}
		off += n
	}
	return grads, nil
}
